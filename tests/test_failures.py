"""Failures that must lose nothing, driven through make as a user would: a killed kernel, a
closed terminal, a second attempt that gets less far, a killed planner, a full disk, and the
memory a large text needs. The earlier run stays byte for byte, and attempts keep their
checkpoints."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import rnn_core as rc
from workbook import files
from test_planner import TINY, errors, make, tree, wait_for

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- failures keep the good run

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A finished run, RUN=g, that the failures below must leave byte for byte as it is."""
    reports = tmp_path_factory.mktemp("good")
    make("report", "RUN=g", "N_UPDATES=200", f"P={TINY}", reports=reports)
    return reports, reports / "g"


LONG = ["RUN=g", "N_UPDATES=3000000", f"P={TINY} checkpoint_every=500"]


def start_long(reports, *extra):
    """A long run into g's folder, in its own session (as a terminal's job), returned once training runs."""
    proc = make("report", *LONG, *extra, reports=reports, start_new_session=True)
    wait_for(lambda: (reports / ".g.building" / "checkpoint.npz").exists(), what="the first checkpoint")
    return proc


def test_a_killed_kernel_keeps_the_earlier_run_and_the_next_failure_too(good):
    reports, run = good
    before = tree(run)
    proc = start_long(reports)
    kernels = [int(d.name) for d in Path("/proc").glob("[0-9]*") if _is_kernel_of(d, reports)]
    assert len(kernels) == 1
    os.kill(kernels[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == ["error: the Python kernel running 02_train died (killed, or out of memory); "
                     "the notebook up to there is kept"], err
    assert "Traceback" not in err and "Kernel died" not in err
    assert re.search(r"its checkpoint \(update [\d,]+\) is in .*g\.failed; this continues it: make report .*RESUME=1", err)
    assert tree(run) == before and not (reports / ".g.building").exists()
    attempt = tree(reports / "g.failed")
    failing = make("report", "RUN=g", "M=0", reports=reports, check=False)
    assert len(errors(failing)) == 1 and "m must be >= 1, got 0" in errors(failing)[0]
    assert "nothing was made; the earlier run in" in failing.stderr and tree(run) == before
    assert tree(reports / "g.failed") == attempt and not (reports / "g.failed-latest").exists()


def _is_kernel_of(proc_dir: Path, reports: Path) -> bool:
    """Whether /proc/<pid> is a Jupyter kernel running a notebook of a run under `reports`."""
    try:
        cmd = (proc_dir / "cmdline").read_bytes()
        if b"ipykernel" not in cmd:
            return False
        parent = int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
        return str(reports).encode() in Path(f"/proc/{parent}/environ").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def test_hangup_and_a_second_shorter_attempt_keep_the_longer_state(good):
    """SIGHUP (a closed terminal) and then Ctrl-C of a new attempt that got less far: the
    earlier run stays, the state further along stays in g.failed, the shorter one beside it,
    and RESUME=1 continues the longer. A second make meanwhile is refused in one line."""
    reports, run = good
    for d in (reports / "g.failed", reports / "g.failed-latest"):   # attempts of the test before
        shutil.rmtree(d, ignore_errors=True)
    before = tree(run)
    proc = start_long(reports)
    busy = make("report", "RUN=g", "N_UPDATES=200", f"P={TINY}", reports=reports, check=False)
    assert len(errors(busy)) == 1 and re.search(r"g is being made by process \d+ \(since [\d:]+\); wait for it",
                                                errors(busy)[0]), busy.stderr
    time.sleep(4)                                   # further along than the attempt below
    os.killpg(proc.pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert [line for line in err.splitlines() if line.startswith("error:")] == \
        ["error: interrupted by SIGHUP (the terminal closed)"], err
    first = files.checkpoint_updates(reports / "g.failed" / "checkpoint.npz")
    assert first >= 1000 and tree(run) == before

    proc = start_long(reports)
    os.killpg(proc.pid, signal.SIGINT)              # as Ctrl-C in the terminal
    out, err = proc.communicate(timeout=120)
    second = files.checkpoint_updates(reports / "g.failed-latest" / "checkpoint.npz")
    assert second < first
    assert files.checkpoint_updates(reports / "g.failed" / "checkpoint.npz") == first
    assert f"keeps an earlier attempt that got further (update {first:,}); RESUME=1 continues that one" in err
    assert tree(run) == before

    resumed = make("report", *LONG[:1], f"N_UPDATES={first + 100}", LONG[2], "RESUME=1", reports=reports)
    assert f"g.failed/checkpoint.npz (update {first:,})" in resumed.stdout
    assert json.loads((run / "run.json").read_text())["resumed_from"] == first


def test_a_killed_planner_leaves_no_lock_and_its_attempt_is_kept(good, tmp_path):
    """kill -9 of make and the planner: the lock dies with them, the next make takes the folder,
    keeps the half-built attempt as g.failed, and leaves no temporary file."""
    reports, run = good
    proc = start_long(reports)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    wait_for(lambda: not any(_is_kernel_of(d, reports) for d in Path("/proc").glob("[0-9]*")), 30,
             "the orphaned kernel's exit")
    failing = make("report", "RUN=g", "M=0", reports=reports, check=False)
    assert "is being made" not in failing.stderr and "m must be >= 1" in failing.stderr
    assert not (reports / ".g.building").exists()
    assert files.checkpoint_updates(reports / "g.failed" / "checkpoint.npz") > 0 or \
        files.checkpoint_updates(reports / "g.failed-latest" / "checkpoint.npz") > 0
    assert not [p for p in reports.rglob("*.tmp")]


# ----------------------------------------------------------------------------- a full disk

MNT = Path("/mnt/dd2424-test-tmpfs")


@pytest.fixture
def small_disk():
    """A 24 MB tmpfs as REPORTS (needs root; skipped with the reason where mounting is not allowed)."""
    try:
        MNT.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(MNT)], capture_output=True,
                              text=True)
    except OSError as err:
        pytest.skip(f"cannot mount a small tmpfs here: {err}")
    if proc.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    yield MNT
    subprocess.run(["umount", str(MNT)], capture_output=True)


def test_a_full_disk_during_resume_keeps_every_checkpoint(small_disk, tmp_path):
    """The case that lost 30,000 updates: RESUME=1 until the disk is full. The run's checkpoint
    stays whole, and once there is space again RESUME=1 completes the run, bit for bit the same
    as a run never stopped."""
    args = ["P=m=16 check_m=[3] passage_length=200 temperatures=[1.0] top_ps=[] speed=False check_torch=False "
            "checkpoint_every=500 sample_every=5000 val_every=5000"]
    make("report", "RUN=d", *args, "N_UPDATES=3000", reports=small_disk)
    run = small_disk / "d"
    before = tree(run)
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - 3 * (run / "checkpoint.npz").stat().st_size))
    proc = make("report", "RUN=d", *args, "N_UPDATES=12000", "RESUME=1", reports=small_disk, check=False)
    assert proc.returncode != 0
    assert len(errors(proc)) == 1 and "No space left on device" in errors(proc)[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(run) == before                           # the only finished state, untouched
    for d in (small_disk / "d.failed", small_disk / "d.failed-latest"):
        assert not (d / "checkpoint.npz").exists() or files.checkpoint_updates(d / "checkpoint.npz") >= 3000
    filler.unlink()
    make("report", "RUN=d", *args, "N_UPDATES=12000", "RESUME=1", reports=small_disk)
    make("report", "RUN=whole", *args, "N_UPDATES=12000", reports=tmp_path)
    assert (run / "history.csv").read_bytes() == (tmp_path / "whole" / "history.csv").read_bytes()


# ----------------------------------------------------------------------------- a large text

def peak_rss(proc) -> int:
    """Poll the process tree of proc until it ends; the largest resident size of any one process."""
    peak = 0
    while proc.poll() is None:
        children, todo = [], [proc.pid]
        stats = {}
        for d in Path("/proc").glob("[0-9]*"):
            try:
                stats[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        while todo:
            p = todo.pop()
            children.append(p)
            todo += [c for c, parent in stats.items() if parent == p]
        for p in children:
            try:
                status = Path(f"/proc/{p}/status").read_text()
                peak = max(peak, int(re.search(r"VmRSS:\s+(\d+)", status)[1]) * 1024)
            except (OSError, TypeError):
                pass
        time.sleep(0.2)
    return peak


def test_a_large_text_needs_a_small_multiple_of_its_size_in_memory(tmp_path):
    """20 MB of text through the whole report (speed section included): no process holds more
    than 400 MB (a kernel with numpy and matplotlib, or nbconvert) and 4 times the text, which
    is kept at one byte a character and read once, by the planner."""
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")
    book = tmp_path / "big.txt"
    size = 20_000_000
    book.write_text((text * (size // len(text) + 1))[:size], encoding="utf-8")
    proc = make("report", f"DATA={book}", "N_UPDATES=100", "RUN=big", "P=check_m=[3]", reports=tmp_path / "r",
                start_new_session=False)
    peak = peak_rss(proc)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert peak < 400e6 + 4 * size, f"{peak / 1e6:.0f} MB"
