"""Studies: notebook parameters over a grid, times seeds, each run a Dask task.

    make study GRID="chunk_order=sequential,shuffled batch_size=1,32" SEEDS="1 2 3"

A study is runs: every point of the Cartesian product of GRID, for every seed, on PRESET,
with the other variables as for make report. Each run is an ordinary run folder made by the
planner (`planner.py one`), so a study reuses what make report made with the same settings,
and the other way round. The runs go to Dask distributed: by default a local cluster of
JOBS worker processes, one thread and one BLAS thread each; SCHEDULER=tcp://host:8786 sends
them to a running cluster whose workers see this project folder. Then 05_compare writes the
study's report. make batch (GRID empty) and make compare (GRID over the preset) are studies.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Point:
    """One run of a study: the preset, the seed and the grid's values, as make variables."""
    preset: str
    seed: str
    values: tuple          # ((notebook parameter, value as typed), ...) in GRID's order

    def env(self, base: dict) -> dict:
        """The environment that makes this run: the study's own, with the grid's values added
        to P (after the user's P), PRESET and SEED set."""
        p = " ".join([base.get("P", "")] + [f"{k}={v}" for k, v in self.values]).strip()
        return {**base, "PRESET": self.preset, "SEED": self.seed, "P": p}

    @property
    def label(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.values) or self.preset


def parse_grid(text: str) -> list:
    """GRID="name=v1,v2 name2=w1,w2" as [(name, [values])]; one line for anything else."""
    from planner import PlanError
    axes = []
    for word in (text or "").split():
        name, eq, values = word.partition("=")
        vals = [v for v in values.split(",")]
        if not eq or not name.isidentifier() or not all(vals):
            raise PlanError(f"GRID takes name=value,value,... separated by spaces, got {word!r}; "
                            f'e.g. GRID="chunk_order=sequential,shuffled batch_size=1,32"')
        if name in [a for a, _ in axes]:
            raise PlanError(f"{name} is in GRID twice; give each parameter once")
        if len(set(vals)) != len(vals):
            raise PlanError(f"{name} lists a value twice in GRID: {values}")
        axes.append((name, vals))
    return axes


def points(presets: list, seeds: list, axes: list) -> list:
    combos = list(itertools.product(*[[(name, v) for v in vals] for name, vals in axes])) or [()]
    return [Point(p, s, tuple(c)) for p in presets for c in combos for s in seeds]


# ----------------------------------------------------------------------------- one run, on a worker

def _die_with_parent():
    """In the child: SIGTERM when the worker that started it dies (Linux), so a lost worker's
    run stops as if killed, writes its checkpoint and can be resumed."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_task(python: str, root: str, env: dict, stop_name: str | None = None) -> dict:
    """A Dask task: make one run with the planner, in a process of its own (its notebooks'
    kernels under it). Returns its exit status and its one-line error. If the study's stop
    event is set meanwhile, the run is asked to stop (Ctrl-C): it keeps its checkpoint."""
    if not Path(root, "notebooks", "planner.py").is_file() or not Path(python).exists():
        return {"code": 1, "error": f"this worker does not see the project at {root} (or {python}); "
                                    f"workers need the project on a shared filesystem"}
    env = {**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "DD2424_STUDY": "1"}
    start = time.time()
    proc = subprocess.Popen([python, str(Path(root, "notebooks", "planner.py")), "one"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_die_with_parent, start_new_session=True)
    stop = None
    if stop_name:
        try:
            from distributed import Event
            stop = Event(stop_name)
        except Exception:  # noqa: BLE001 - outside a worker: no stop event
            stop = None
    while True:
        try:
            out, err = proc.communicate(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            try:
                if stop is not None and stop.is_set():
                    os.killpg(proc.pid, signal.SIGINT)
                    stop = None
            except Exception:  # noqa: BLE001 - the scheduler gone: the run goes on
                stop = None
    errors = [line[7:] for line in err.splitlines() if line.startswith("error: ")]
    return {"code": proc.returncode, "error": errors[0] if errors else "",
            "up_to_date": "is up to date" in out, "seconds": time.time() - start}


# ----------------------------------------------------------------------------- the study, from the client

def cluster(jobs: int, scheduler: str | None):
    """A Dask client: on SCHEDULER, or on a local cluster of `jobs` single-threaded workers."""
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler, timeout="20s"), None
    lc = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50)
    return Client(lc), lc


def progress_line(done, running, failed, pending, durations, workers) -> str:
    eta = ""
    if durations and (running or pending):
        left = (pending + running / 2) * (sum(durations) / len(durations)) / max(1, workers)
        eta = f", about {left:.0f} s left" if left < 120 else f", about {left / 60:.0f} min left"
    return f"study: {done} done, {running} running, {failed} failed, {pending} waiting{eta}"
