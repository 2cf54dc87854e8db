import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = "DD2424_TEST_SCRATCH"       # names the session's folder of temporary files, deleted at its end

# One BLAS thread: the tests' timings and the bytes of batched runs do not depend on the machine's cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """In the session's first process (xdist's workers and every make, kernel and Dask worker the
    tests start inherit its environment): temporary folders, pytest's, kernels' connection files,
    IPython's profile and Dask's scratch space all go in one folder of the system's temporary
    space (outside the project, as a user's would be), deleted when the session ends: the tests
    leave nothing behind."""
    if hasattr(config, "workerinput"):
        return
    scratch = Path(tempfile.mkdtemp(prefix="dd2424-tests-"))
    os.environ[SCRATCH] = str(scratch)
    for name, sub in (("TMPDIR", "tmp"), ("JUPYTER_RUNTIME_DIR", "jupyter"), ("IPYTHONDIR", "ipython"),
                      ("DASK_TEMPORARY_DIRECTORY", "dask")):
        (scratch / sub).mkdir()
        os.environ[name] = str(scratch / sub)
    tempfile.tempdir = None                     # read TMPDIR again
    if not config.option.basetemp:
        config.option.basetemp = str(scratch / "pytest")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get(SCRATCH):
        shutil.rmtree(os.environ.pop(SCRATCH), ignore_errors=True)


@pytest.fixture
def inside():
    """A REPORTS folder inside the project, where clean leaves alone what is not the workbook's
    (outside it, clean refuses a folder that holds such things)."""
    reports = ROOT / "reports" / f"test-clean-{os.getpid()}"
    yield reports
    shutil.rmtree(reports, ignore_errors=True)
