"""make study on a real Dask cluster: a scheduler and two workers that the test starts on
127.0.0.1, as a user would on machines that share the project folder."""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_planner import TINY, make, pdf_text_of, wait_for

ROOT = Path(__file__).resolve().parents[1]
DASK = ROOT / ".venv" / "bin" / "dask"
GRID = "chunk_order=sequential,shuffled batch_size=2,0"      # batch_size 0 is refused: half the runs fail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes, one thread each."""
    port = free_port()
    logs = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "DASK_TEMPORARY_DIRECTORY": str(logs)}   # Dask's files there
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env, stdout=open(logs / "s.out", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)]
    address = f"tcp://127.0.0.1:{port}"
    for i in range(2):
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--dashboard-address", ":0", "--name", f"w{i}",
                                       "--local-directory", str(logs / f"w{i}")], env=env,
                                      stdout=open(logs / f"w{i}.out", "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
    from distributed import Client
    with Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    yield address
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)


@pytest.fixture(scope="module")
def study(dask_cluster, tmp_path_factory):
    reports = tmp_path_factory.mktemp("study")
    proc = make("study", f"GRID={GRID}", "SEEDS=1 2", "N_UPDATES=200", f"P={TINY}", f"SCHEDULER={dask_cluster}",
                reports=reports, check=False)
    return reports, proc


def runs_of(reports: Path, ok=True) -> list:
    return sorted(d for d in reports.iterdir() if d.is_dir() and d.name.startswith("classic-seed-")
                  and d.name.endswith(".failed") != ok)


def artefacts(run: Path) -> dict:
    """What a run computed: its histories, samples and passage as bytes, its best model's arrays."""
    out = {name: (run / name).read_bytes() for name in ("history.csv", "validation.csv", "samples.json",
                                                         "passage.txt", "grad_check.json")}
    with np.load(run / "best_model.npz") as z:
        out.update({f"best_model:{k}": z[k].tobytes() for k in z.files})
    return out


def test_a_study_runs_every_grid_point_and_seed_and_reports_them(study):
    reports, proc = study
    assert proc.returncode == 0, proc.stderr
    assert "study: 8 runs, 0 up to date, 4 refused, 4 to make on tcp://127.0.0.1:" in proc.stdout
    good, bad = runs_of(reports), runs_of(reports, ok=False)
    assert len(good) == 4 and not bad                      # batch_size 0 fails its runs only, refused
    assert not any(d.name.endswith(".building") for d in reports.iterdir())    # before they made anything
    assert proc.stdout.count("failed: ") == 4 and "batch_size must be >= 1, got 0" in proc.stdout
    pdf = next(reports.glob("study-classic-*-chunk_ordersequential_shuffled-batch_size2*/comparison.pdf"))
    assert re.search(r"study: \d+ done, [12] running", proc.stdout), proc.stdout   # what runs, as it runs
    text = " ".join(pdf_text_of(pdf).split())
    for point in ("chunk_order = sequential, batch_size = 2", "chunk_order = shuffled, batch_size = 2"):
        assert point in text, point
    assert text.count("failed") >= 4 and "batch_size must be >= 1, got 0" in text
    infos = [json.loads((d / "run.json").read_text()) for d in good]
    scores = {}                                   # the verdict again, from run.json's held-out losses
    for i in infos:
        scores.setdefault(f"chunk_order = {i['params']['chunk_order']}, batch_size = 2", []).append(i["val_loss_final"])
    (first, a), (_, b) = sorted(scores.items(), key=lambda kv: statistics.mean(kv[1]))
    lead, spread = statistics.mean(b) - statistics.mean(a), max(statistics.stdev(v) for v in scores.values())
    assert "ranked by one measure, the held-out loss in nats per character" in text
    assert f"{first} has the lowest held-out loss" in text.replace("*", "")
    assert ("it leads" if lead > 2 * spread else "not a lead by this rule" if lead > spread
            else "within the noise between seeds") in text
    assert sorted((i["params"]["chunk_order"], i["params"]["seed"]) for i in infos) == \
        [("sequential", 1), ("sequential", 2), ("shuffled", 1), ("shuffled", 2)]
    assert all(i["blas_threads"] == 1 for i in infos)


def test_a_study_run_is_the_run_make_report_makes(study, tmp_path):
    """Same settings, same BLAS threads: the same bytes; and make report reuses the study's run."""
    reports, _ = study
    run = next(d for d in runs_of(reports) if "shuffled" in d.name and "seed-2" in d.name)
    make("report", "SEED=2", "N_UPDATES=200", f"P={TINY} chunk_order=shuffled batch_size=2",
                 "RUN=alone", reports=tmp_path)
    assert artefacts(run) == artefacts(tmp_path / "alone")
    reuse = make("report", "SEED=2", "N_UPDATES=200", f"P={TINY} chunk_order=shuffled batch_size=2", reports=reports)
    assert "rendering the PDF again" in reuse.stdout and "01_gradient_check" not in reuse.stdout
    assert (run / "report.pdf").is_file()
    try:                    # the same run under another name: the study's results, copied, not trained
        copy = make("report", "SEED=2", "N_UPDATES=200", f"P={TINY} chunk_order=shuffled batch_size=2", "RUN=copy",
                    reports=reports)
        assert f"the same run as {run}" in copy.stdout and "02_train" not in copy.stdout
        assert artefacts(reports / "copy") == artefacts(run)
    finally:
        shutil.rmtree(reports / "copy", ignore_errors=True)


def test_the_comparison_notebook_runs_by_hand_given_only_its_runs(study, tmp_path):
    """labels, grid and errors are parameters with defaults: a user's papermill call needs none."""
    import papermill as pm
    reports, _ = study
    good = runs_of(reports)
    pm.execute_notebook(str(ROOT / "notebooks" / "05_compare.ipynb"), str(tmp_path / "05_compare.ipynb"),
                        parameters={"runs": [str(d) for d in good], "out_dir": str(tmp_path / "cmp")},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    text = (tmp_path / "05_compare.ipynb").read_text()
    assert "4 runs finished" in text and "failed" not in text.split("runs finished")[1].split("\n")[0]


def test_two_studies_on_other_values_write_two_comparisons(study, dask_cluster):
    reports, _ = study
    make("study", "GRID=chunk_order=sequential", "SEEDS=1 2", "N_UPDATES=200", f"P={TINY} batch_size=2",
         f"SCHEDULER={dask_cluster}", reports=reports)
    comparisons = sorted(reports.glob("study-*/comparison.pdf"))
    assert len(comparisons) == 2 and len({p.parent for p in comparisons}) == 2


def test_a_study_again_submits_nothing(study, dask_cluster):
    reports, _ = study
    before = {d.name: (d / "history.csv").stat().st_mtime_ns for d in runs_of(reports)}
    proc = make("study", "GRID=chunk_order=sequential,shuffled batch_size=2", "SEEDS=1 2", "N_UPDATES=200",
                f"P={TINY}", f"SCHEDULER={dask_cluster}", reports=reports)
    assert "study: 4 runs, 4 up to date, 0 to make" in proc.stdout
    assert {d.name: (d / "history.csv").stat().st_mtime_ns for d in runs_of(reports)} == before


def test_a_run_whose_worker_dies_resumes_and_ends_as_if_never_stopped(dask_cluster, tmp_path):
    """kill -9 the worker that runs a study's run while it trains: Dask gives the task to the
    other worker, which resumes the run from its checkpoint; the run ends bit for bit as one
    never stopped."""
    reports = tmp_path / "r"
    args = ["N_UPDATES=10000", "P=m=8 check_m=[3] sample_every=5000 val_every=5000 passage_length=200 "
            "temperatures=[1.0] top_ps=[] speed=False check_torch=False checkpoint_every=1000"]
    proc = make("study", "GRID=chunk_order=sequential", "SEEDS=3", *args, f"SCHEDULER={dask_cluster}",
                reports=reports, start_new_session=True)
    wait_for(lambda: any(reports.glob(".*.building/checkpoint.npz")), 120, "the first checkpoint")
    planner = next(int(d.name) for d in Path("/proc").glob("[0-9]*")
                   if _cmd(d).endswith("-m workbook one") and str(reports).encode() in _environ(d))
    worker = int((Path(f"/proc/{planner}/stat").read_text().rsplit(")", 1)[1].split())[1])
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    run = next(d for d in reports.iterdir() if d.name.startswith("classic-seed-3") and not d.name.endswith("failed"))
    info = json.loads((run / "run.json").read_text())
    assert info["updates"] == 10000 and info["resumed_from"] > 0       # it did resume
    make("report", "SEED=3", args[0], args[1] + " chunk_order=sequential", "RUN=whole", reports=tmp_path)
    assert artefacts(run) == artefacts(tmp_path / "whole")


def _cmd(d: Path) -> str:
    try:
        return (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _environ(d: Path) -> bytes:
    try:
        return (d / "environ").read_bytes()
    except OSError:
        return b""


# ----------------------------------------------------------------------------- the notebooks by hand

def test_make_lab_starts_a_server_that_answers(tmp_path):
    """As root (here) Jupyter needs --allow-root, which make lab adds; as a user it is left out."""
    import urllib.request
    port = free_port()
    env = {**os.environ, "LAB_ARGS": f"--port {port} --no-browser --ServerApp.token=t"}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "lab"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def answers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as r:
                    return r.status == 200 and b"version" in r.read()
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                return False
        wait_for(answers, 300, "JupyterLab's answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_docs_papermill_command_works_on_a_fresh_clone():
    """docs/code.md's command, as written, from a clean folder: the output folder is made first."""
    readme = (ROOT / "docs" / "code.md").read_text(encoding="utf-8")
    block = re.search(r"\n    (cd notebooks && mkdir -p \.\./reports/mine\n.*?run_dir \.\./reports/mine)\n", readme, re.S)
    assert block, "docs/code.md lost its papermill command"
    command = block[1].replace("\n    ", "\n").replace("\\\n", " ")
    mine = ROOT / "reports" / "mine"
    shutil.rmtree(mine, ignore_errors=True)
    try:
        proc = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((mine / "run.json").read_text())["updates"] == 2000
    finally:
        shutil.rmtree(mine, ignore_errors=True)


def test_notebooks_opened_by_hand_write_to_a_folder_of_their_own():
    import papermill as pm
    for step in ("01_gradient_check", "02_train", "03_loss_plot", "04_synthesis"):
        assert pm.inspect_notebook(str(ROOT / "notebooks" / f"{step}.ipynb"))["run_dir"]["default"] == \
            '"../reports/by-hand"'
