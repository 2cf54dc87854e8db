"""The third reliability audit, for studies: a wrong SCHEDULER gets one line within 30 s, a
stopped study says so once (no worker tracebacks), two studies never share a folder and one
being made is locked, the progress line counts what runs, and no scratch files stay behind.
Each reproduction is a test, with a variant the audit did not name."""
import http.server
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_audit import one_error
from test_planner import TINY, make, wait_for

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- 5. SCHEDULER

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"tcp://127.0.0.1:{s.getsockname()[1]}"
    s.close()


STUDY = ["GRID=eta=0.1,0.2", "SEEDS=1", "N_UPDATES=100", f"P={TINY}"]


@pytest.mark.parametrize("kind", ["http", "silent", "closed"])
def test_a_wrong_scheduler_is_one_line_within_30_s(kind, http_server, silent_listener, tmp_path):
    address = {"http": http_server, "silent": silent_listener, "closed": f"tcp://127.0.0.1:{free_port()}"}[kind]
    t0 = time.time()
    proc = make("study", *STUDY, f"SCHEDULER={address}", reports=tmp_path, check=False, timeout=120)
    assert time.time() - t0 < 40
    assert f"SCHEDULER={address}" in one_error(proc)


@pytest.mark.parametrize("address", [";touch {mark}", "file:///etc/passwd", "tcp://a b:1", "$(touch {mark})"])
def test_a_malformed_scheduler_is_refused_at_once(address, tmp_path):
    mark = tmp_path / "mark"
    t0 = time.time()
    proc = make("study", *STUDY, f"SCHEDULER={address.format(mark=mark)}", reports=tmp_path / "r", check=False)
    assert time.time() - t0 < 20 and "is not the address of a Dask scheduler" in one_error(proc)
    assert not mark.exists()


def test_ctrl_c_stops_a_study_on_a_scheduler_without_workers(tmp_path):
    """Misconfigured workers (here: none at all): the study waits, and Ctrl-C stops it at once,
    with one message."""
    port = free_port()
    dask = ROOT / ".venv" / "bin" / "dask"
    sched = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env={**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path)})
    try:
        proc = make("study", *STUDY, f"SCHEDULER=tcp://127.0.0.1:{port}", reports=tmp_path, start_new_session=True)
        lines = []
        wait_for(lambda: (lines.append(proc.stdout.readline()) or "to make" in lines[-1]), 60, "the study's start")
        time.sleep(2)
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert time.time() - t0 < 20 and proc.returncode != 0
        assert [line for line in err.splitlines() if line.startswith("error:")] == \
            ["error: interrupted: stopping the running runs (each keeps its checkpoint)..."], err
        assert "Traceback" not in err
    finally:
        os.killpg(sched.pid, signal.SIGTERM)
        sched.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_local_study_prints_one_message_and_no_worker_tracebacks(sig, tmp_path):
    proc = make("study", "GRID=eta=0.1,0.2", "SEEDS=1", "N_UPDATES=3000000", f"P={TINY} checkpoint_every=500",
                reports=tmp_path, start_new_session=True)
    wait_for(lambda: len(list(tmp_path.glob(".*.building/checkpoint.npz"))) == 2, 240, "both runs' checkpoints")
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert len(list(tmp_path.glob("classic-seed-1-*.failed/checkpoint.npz"))) == 2   # each kept its checkpoint


# ----------------------------------------------------------------------------- 4. a study's folder

def test_two_studies_never_share_a_folder():
    from workbook.runs import study_name
    names = {study_name("study", ["classic"], ["1"], [("eta", ["0.1", "0.2"])]),
             study_name("study", ["classic"], ["1"], [("eta", ["0.3"])]),
             study_name("study", ["classic"], ["2"], [("eta", ["0.3"])]),
             study_name("batch", ["classic"], ["1", "2"], []), study_name("batch", ["classic"], ["3"], []),
             study_name("compare", ["classic", "adam2025"], ["1"], [])}
    assert len(names) == 6
    long = study_name("study", ["classic"], [str(s) for s in range(200)], [("eta", ["0.1"])])
    assert len(long) <= 180 and long != study_name("study", ["classic"], [str(s) for s in range(201)], [("eta", ["0.1"])])


def test_a_study_being_made_is_locked(tmp_path):
    from workbook.planner import RunLock
    from workbook.runs import study_name
    name = study_name("study", ["classic"], ["1"], [("eta", ["0.1", "0.2"])],
                      env={"N_UPDATES": "100", "P": TINY})
    with RunLock(tmp_path, name, tmp_path / name):
        proc = make("study", *STUDY, reports=tmp_path, check=False)
    assert "is being made by process" in one_error(proc) and "dashboard" not in proc.stdout


def test_the_progress_counts_as_running_only_what_a_worker_runs():
    from workbook.study import counts, progress_line

    class Client:
        def scheduler_info(self):
            return {"workers": {"w1": {"nthreads": 1}, "w2": {"nthreads": 2}}}

        def processing(self):      # the scheduler queues tasks on workers ahead of their threads
            return {"w1": ("a", "b", "c"), "w2": ("d",)}

    class Future:
        def __init__(self, done):
            self._done = done

        def done(self):
            return self._done

    futures = [Future(False)] * 6 + [Future(True)] * 2
    assert counts(Client(), futures) == (2, 4)
    assert progress_line(2, 2, 0, 4, 10.0).startswith("study: 2 done, 2 running, 0 failed, 4 waiting")


def test_a_local_study_leaves_no_scratch_files(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    proc = make("batch", "SEEDS=1", "N_UPDATES=100", f"P={TINY}", reports=tmp_path / "r")
    assert re.search(r"study: 0 done, 1 running", proc.stdout), proc.stdout     # a log's line, as it runs
    assert not list(scratch.rglob("dask-scratch-space")), list(scratch.rglob("*"))[:5]
