import os

# One BLAS thread: the tests' timings and the bytes of batched runs do not depend on the machine's cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
