import os
import shutil
from pathlib import Path

import pytest

# One BLAS thread: the tests' timings and the bytes of batched runs do not depend on the machine's cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def inside():
    """A REPORTS folder inside the project, where clean leaves alone what is not the workbook's
    (outside it, clean refuses a folder that holds such things)."""
    reports = Path(__file__).resolve().parents[1] / "reports" / f"test-clean-{os.getpid()}"
    yield reports
    shutil.rmtree(reports, ignore_errors=True)
