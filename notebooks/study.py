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


def run_study(runs: list, pts: list, *, jobs: int, scheduler: str | None) -> list | None:
    """Make the runs that are not up to date as Dask tasks, with one live progress line.
    Returns each run's result ({"code", "error"}), or None when interrupted (said here)."""
    import uuid
    from planner import PlanError, fingerprint, read_plan, resolve_params, say
    todo = []
    for i, run in enumerate(runs):
        try:
            run.params = resolve_params(run)
        except Exception:  # noqa: BLE001 - the run itself will say what is wrong
            todo.append(i)
            continue
        plan = read_plan(run.folder)
        if not (plan.get("status") == "complete" and plan.get("train") == fingerprint(run)["train"]):
            todo.append(i)
    results = [{"code": 0, "error": "", "up_to_date": True} for _ in runs]
    say(f"study: {len(runs)} run{'s' if len(runs) != 1 else ''}, {len(runs) - len(todo)} up to date, "
        f"{len(todo)} to make" + (f" on {scheduler}" if scheduler and todo else
                                   f" on {jobs} local Dask worker{'s' if jobs != 1 else ''}" if todo else ""))
    if not todo:
        return results
    try:
        client, local = cluster(jobs, scheduler)
    except (OSError, TimeoutError) as err:
        raise PlanError(f"cannot reach the Dask scheduler {scheduler}: {err}; start it (dask scheduler) "
                        f"or leave SCHEDULER empty for a local cluster") from None
    from distributed import Event, as_completed
    say(f"  dashboard: {client.dashboard_link}")
    stop_name = f"dd2424-stop-{uuid.uuid4().hex}"
    stop = Event(stop_name, client=client)
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    base = {k: v for k, v in os.environ.items()}
    futures = {}
    for i in todo:
        env = pts[i].env(base)
        futures[client.submit(run_task, python, str(ROOT), env, stop_name, key=f"{runs[i].name}-{uuid.uuid4().hex[:8]}",
                              pure=False)] = i
    workers = max(1, len(client.scheduler_info().get("workers", {})) or jobs)
    done = failed = 0
    durations = []
    tty = sys.stdout.isatty()
    last = 0.0

    def show(final=False):
        nonlocal last
        processing = sum(len(v) for v in client.processing().values())
        line = progress_line(done, processing, failed, len(todo) - done - failed - processing, durations, workers)
        if tty:
            sys.stdout.write("\r" + line + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or time.time() - last > 30:
            say(line)
            last = time.time()

    pending = as_completed(list(futures), with_results=False)
    try:
        while True:
            batch = pending.next_batch(block=False)
            for fut in batch:
                i = futures[fut]
                try:
                    res = fut.result()
                except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: the worker died again and again
                    res = {"code": 1, "error": f"its Dask task failed: {type(err).__name__}: {err}".splitlines()[0]}
                results[i] = res
                if res["code"] == 0:
                    done += 1
                    durations.append(res.get("seconds", 0.0))
                else:
                    failed += 1
                    say(("\n" if tty else "") + f"  failed: {runs[i].name}: {res['error']}")
            if pending.is_empty():
                break
            show()
            time.sleep(0.5)
        show(final=True)
    except KeyboardInterrupt:
        stop.set()                                      # running runs stop and keep their checkpoints
        client.cancel([f for f in futures if f.status == "pending" and not f.done()])
        say("\nerror: interrupted: stopping the running runs (each keeps its checkpoint)...", err=True)
        try:
            for fut in as_completed([f for f in futures if not f.cancelled()], timeout=180):
                pass
        except Exception:  # noqa: BLE001 - what does not stop in time is left to its worker
            pass
        say(f"  {done} run{'s' if done != 1 else ''} finished and kept; the same command continues the study "
            f"(runs that were stopped resume from their checkpoints)", err=True)
        return None
    finally:
        client.close()
        if local is not None:
            local.close()
    return results
