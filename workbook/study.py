"""Studies: notebook parameters over a grid, times seeds, each run a Dask task.

    make study GRID="chunk_order=sequential,shuffled batch_size=1,32" SEEDS="1 2 3"

A study is runs: every point of the Cartesian product of GRID, for every seed, on PRESET,
with the other variables as for make report. Each run is an ordinary run folder made by the
planner (`python -m workbook one`), so a study reuses what make report made with the same settings,
and the other way round. The runs go to Dask distributed: by default a local cluster of
JOBS workers, each running one run at a time with one BLAS thread; SCHEDULER=tcp://host:8786 sends
them to a running cluster whose workers see this project folder. Then 05_compare writes the
study's report. make batch (GRID empty) and make compare (GRID over the preset) are studies.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from workbook.runs import (ROOT, VARIABLES, PlanError, fingerprint, p_pairs, read_plan, resolve_params, same_run, say,
                           trained)


@dataclass
class Point:
    """One run of a study: the preset, the seed and the grid's values, as make variables."""
    preset: str
    seed: str
    values: tuple          # ((notebook parameter, value as typed), ...) in GRID's order
    replaced: tuple = ()   # parameters of values that take the place of the user's own (a matched RNN's m)

    def env(self, base: dict) -> dict:
        """The environment that makes this run: the study's own, with the grid's values added
        to P (after the user's P), PRESET and SEED set; a replaced parameter's own value, in P
        or its make variable, left out."""
        own = [f"{k}={v}" for k, v in p_pairs(base.get("P")) if k not in self.replaced]
        p = " ".join(own + [f"{k}={v}" for k, v in self.values])
        return {**{k: v for k, v in base.items() if k not in {var.name for var in VARIABLES if var.param in self.replaced}},
                "PRESET": self.preset, "SEED": self.seed, "P": p}

    @property
    def label(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.values) or self.preset


def parse_grid(text: str) -> list:
    """GRID="name=v1,v2 name2=w1,w2" as [(name, [values])]; one line for anything else."""
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


def matched_points(pts: list, m: int, K: int) -> list:
    """For each seed, the vanilla RNN whose m gives the parameter count nearest the LSTM's of m
    units on K characters (lstm.matching_m), as one more point of the study."""
    from workbook.lstm import matching_m
    return [Point(p.preset, p.seed, p.values + (("m", str(matching_m(K, m))),), replaced=("m",))
            for p in pts if p.values == (("cell", "rnn"),)]


# ----------------------------------------------------------------------------- one run, on a worker
# A run's task is subprocess.run of `python -m workbook one` on the worker: a function every
# Python has, so neither the scheduler nor the workers import anything of ours (they only need
# the project folder, on a shared filesystem). The planner watches, in a study, for its worker's
# death and for the study's stop file (planner.Watchdog).


def task_result(proc) -> dict:
    """A finished task's subprocess.CompletedProcess as {"code", "error", "up_to_date"}."""
    errors = [line[7:] for line in proc.stderr.splitlines() if line.startswith("error: ")]
    return {"code": proc.returncode, "error": errors[0] if errors else (proc.stderr.strip().splitlines() or [""])[-1],
            "up_to_date": "is up to date" in proc.stdout}


# ----------------------------------------------------------------------------- the study, from the client

ADDRESS = re.compile(r"(?:(?:tcp|tls)://)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?/?")
HANDSHAKE = 5.0         # seconds a scheduler has to connect and answer as a Dask scheduler


def check_scheduler(address: str) -> None:
    """SCHEDULER is a Dask scheduler's address, and a Dask scheduler answers there within
    HANDSHAKE seconds (Dask's own client would wait on its handshake without end where, say, an
    HTTP server listens); else PlanError in one line."""
    import asyncio
    if not ADDRESS.fullmatch(address):
        raise PlanError(f"SCHEDULER={address} is not the address of a Dask scheduler; give one like "
                        f"tcp://host:8786, or leave SCHEDULER empty for a local cluster")

    async def handshake():
        from distributed.comm import connect
        comm = await connect(address, timeout=HANDSHAKE)
        await comm.close()
    try:
        asyncio.run(asyncio.wait_for(handshake(), HANDSHAKE))
    except Exception as err:  # noqa: BLE001 - refused, timed out, or a peer that does not speak Dask
        why = "nothing answered as a Dask scheduler" if isinstance(err, (TimeoutError, asyncio.TimeoutError)) \
            else str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PlanError(f"SCHEDULER={address}: {why} within {HANDSHAKE:.0f} s; start it (dask scheduler) or "
                        f"leave SCHEDULER empty for a local cluster") from None


def cluster(jobs: int, scheduler: str | None, scratch: str):
    """A Dask client: on SCHEDULER, or on a local cluster of `jobs` single-threaded workers; Dask's
    files in scratch. The local workers are threads of this process: each task only waits on its
    run's own process, so worker processes would add their start (about 0.4 s) and nothing else."""
    import dask
    from distributed import Client, LocalCluster
    dask.config.set({"temporary-directory": scratch})    # Dask's own files too, removed with it
    if scheduler:
        check_scheduler(scheduler)
        return Client(scheduler, timeout="20s"), None
    lc = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                      silence_logs=50, local_directory=scratch)
    return Client(lc), lc


def counts(client, futures: dict) -> tuple[int, int]:
    """(running, waiting) of the study's tasks not finished: a worker runs as many as its threads;
    the scheduler queues the others on it, or keeps them."""
    try:
        workers = client.scheduler_info()["workers"]
        processing = client.processing()
    except Exception:  # noqa: BLE001 - the scheduler is gone: the loop will hear it
        return 0, sum(not f.done() for f in futures)
    running = sum(min(len(keys), workers.get(w, {}).get("nthreads", 1)) for w, keys in processing.items())
    return running, max(0, sum(not f.done() for f in futures) - running)


def progress_line(done, running, failed, waiting, elapsed) -> str:
    """One line for the study; the time left from the pace so far (runs finished per second)."""
    eta, finished = "", done + failed
    if finished and (running or waiting):
        left = (running / 2 + waiting) * elapsed / finished
        eta = f", about {left:.0f} s left" if left < 120 else f", about {left / 60:.0f} min left"
    return f"study: {done} done, {running} running, {failed} failed, {waiting} waiting{eta}"


def run_study(runs: list, pts: list, *, jobs: int, scheduler: str | None) -> list | None:
    """Make the runs that are not up to date as Dask tasks, with one live progress line (in a
    log, a line each time a run ends and every 30 s). A run refused before any work (a bad value)
    is not submitted. Returns each run's result ({"code", "error"}), or None when stopped
    (said here): the first Ctrl-C, SIGTERM or SIGHUP stops the running runs, each keeping its
    checkpoint, and cancels the rest; a second stops at once."""
    import tempfile
    results = [{"code": 0, "error": "", "up_to_date": True} for _ in runs]
    todo, refused, found = [], 0, 0
    for i, run in enumerate(runs):
        try:
            run.params = resolve_params(run)
        except PlanError as err:
            results[i] = {"code": 1, "error": str(err).split("\n")[0], "up_to_date": False}
            refused += 1
            continue
        fp = fingerprint(run)
        if not trained(read_plan(run.folder), fp):
            todo.append(i)
            found += same_run(run, fp) is not None
    say(f"study: {len(runs)} run{'s' if len(runs) != 1 else ''}, {len(runs) - len(todo) - refused} up to date, "
        + (f"{refused} refused, " if refused else "")
        + (f"{found} made before under another name (copied, not trained again), " if found else "")
        + f"{len(todo) - found} to make"
        + (f" on {scheduler}" if scheduler and todo else
           f" on {jobs} local Dask worker{'s' if jobs != 1 else ''}" if todo else ""))
    for run, res in zip(runs, results):
        if res["code"]:
            say(f"  failed: {run.name}: {res['error']}")
    if not todo:
        return results
    scratch = tempfile.mkdtemp(prefix="dd2424-dask-")
    try:
        return submit(runs, pts, todo, results, jobs=jobs, scheduler=scheduler, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def submit(runs, pts, todo, results, *, jobs, scheduler, scratch):
    """The runs of todo as Dask tasks until they end or the study is stopped (see run_study)."""
    import uuid
    stopped = []                        # Ctrl-C, SIGTERM, SIGHUP: a flag the loop reads (Dask's own
                                        # calls would swallow an exception); a second one stops at once
    def stop(signum, frame):
        stopped.append(signum)
        if len(stopped) > 1:
            raise KeyboardInterrupt
    before = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        client, local = cluster(jobs, scheduler, scratch)
    except (OSError, TimeoutError) as err:
        raise PlanError(f"cannot reach the Dask scheduler {scheduler}: {err}; start it (dask scheduler) "
                        f"or leave SCHEDULER empty for a local cluster") from None
    finally:
        if stopped:                     # stopped while the cluster started: nothing was submitted
            for s, old in before.items():
                signal.signal(s, old)
    if stopped:
        client.close()
        if local is not None:
            local.close()
        say("error: interrupted before any run started", err=True)
        return None
    from distributed import as_completed, wait
    say(f"  dashboard: {client.dashboard_link}")
    stop_file = runs[0].reports / f".study-{uuid.uuid4().hex[:12]}.stop"     # seen by every run's planner
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    base = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "DD2424_STUDY": "1", "DD2424_STOP_FILE": str(stop_file)}
    futures = {}
    for i in todo:
        cmd = [python, "-m", "workbook", "one"]
        futures[client.submit(subprocess.run, cmd, cwd=str(ROOT), env=pts[i].env(base), capture_output=True,
                              text=True, key=f"{runs[i].name}-{uuid.uuid4().hex[:8]}", pure=False)] = i
    done = failed = 0
    tty = sys.stdout.isatty()
    last, said = time.time(), (0, 0, False)

    def show(final=False):              # a terminal: one live line; a log: a line when something changes
        nonlocal last, said
        running, waiting = counts(client, futures)
        line = progress_line(done, running, failed, waiting, time.time() - started)
        if tty:
            sys.stdout.write("\r" + line + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or (done, failed, running > 0) != said or time.time() - last > 30:
            say(line)
            last, said = time.time(), (done, failed, running > 0)

    started = time.time()
    pending = as_completed(list(futures), with_results=False)
    try:
        while not pending.is_empty() or stopped:   # a signal as the last runs end (the stop itself
            if stopped:                             # ends them) is a stop still
                raise KeyboardInterrupt
            for fut in pending.next_batch(block=False):
                i = futures[fut]
                try:
                    res = task_result(fut.result())
                except FileNotFoundError as err:
                    res = {"code": 1, "error": f"the worker does not see the project ({err.filename}); workers need "
                                               f"the project folder at {ROOT}, on a shared filesystem"}
                except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: the worker died again and again
                    res = {"code": 1, "error": f"its Dask task failed: {type(err).__name__}: {err}".splitlines()[0]}
                results[i] = res
                if res["code"] == 0:
                    done += 1
                else:
                    failed += 1
                    say(("\n" if tty else "") + f"  failed: {runs[i].name}: {res['error']}")
            show()
            try:                        # until the next run ends, or half a second for the signals and the line
                wait([f for f in futures if not f.done()], timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
        show(final=True)
    except KeyboardInterrupt:
        stop_file.touch()               # running runs stop and keep their checkpoints; runs not
        say(("\n" if tty else "") + "error: interrupted: stopping the running runs (each keeps its "
            "checkpoint)...", err=True)   # yet started end at once when they see it
        try:
            held = {k for keys in client.processing().values() for k in keys}
            client.cancel([f for f in futures if not f.done() and f.key not in held])   # no worker has them
            for _ in as_completed([f for f in futures if not f.done() and f.key in held], timeout=120):
                pass
        except (KeyboardInterrupt, Exception):  # noqa: BLE001 - a second signal, or runs that do not stop in time
            pass
        say(f"  {done} run{'s' if done != 1 else ''} finished and kept; the same command continues the study "
            f"(runs that were stopped resume from their checkpoints)", err=True)
        return None
    finally:
        stop_file.unlink(missing_ok=True)
        for s, old in before.items():
            signal.signal(s, old)
        client.close()
        if local is not None:
            local.close()
    return results
