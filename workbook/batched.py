"""The batched forward and backward pass (mini-batches, shuffled and random chunks, tweets,
float32): B streams of T characters side by side, the hidden state restarting where a tweet
starts, in float64 or float32. rnn_core's pass, for one stream, is the assignment's; this one is
checked against it and against the complex step (01_gradient_check, tests/test_training.py).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

import rnn_core as rc


class BlasThreads:
    """Runs the recurrences' small products on one BLAS thread; the big products keep the rest.

    Each step of a recurrence is a (B, m) x (m, m) product, too small for threads to pay for
    themselves, while the products over all T x B rows at once gain from them. OpenBLAS sets one
    count for the whole process, so it is switched around each loop, through threadpoolctl (a
    no-op without it, or with one thread).
    """

    def __init__(self):
        self.libs = None

    def blas(self) -> list:
        if self.libs is None:
            try:
                from threadpoolctl import ThreadpoolController
                self.libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
            except Exception:            # threadpoolctl missing or unable to see the library
                self.libs = []
        return self.libs

    def count(self) -> int:
        """Threads the BLAS library runs on now (the largest, if several are loaded); 0 if unknown."""
        return max((lib.get_num_threads() or 0 for lib in self.blas()), default=0)

    @contextlib.contextmanager
    def serial(self):
        changed = []
        for lib in self.blas():
            n = lib.get_num_threads()
            if n != 1:
                lib.set_num_threads(1)
                changed.append((lib, n))
        try:
            yield
        finally:
            for lib, n in changed:
                lib.set_num_threads(n)


BLAS = BlasThreads()


def blas_threads() -> int:
    """Threads the BLAS library runs on now (0 if threadpoolctl cannot tell). A batched run's
    bytes depend on it (see BatchBuffers), so the workbook records it with each run."""
    return BLAS.count()


class BatchBuffers:
    """Work arrays for B streams of T characters (mini-batches and tweets), allocated once."""

    def __init__(self, K: int, m: int, T: int, B: int, resets: bool, dtype=np.float64):
        f = dtype
        self.H = np.empty((T + 1, B, m), f)         # H[t+1] = h_t of every stream
        self.Hin = np.empty((T, B, m), f) if resets else self.H[:T]  # h_{t-1} as step t sees it
        self.P = np.empty((T * B, K), f)            # row t*B + j: stream j at step t
        self.dH = np.empty((T, B, m), f)            # dL/dh_t from the output layer, then dL/da_t
        self.D = np.empty((T, B, m), f)
        self.tmp = np.empty((B, m), f)
        self.WT = np.empty((m, m), f)
        self.UbT = np.empty((K, m), f)              # row k: U x + b for x = character k
        self.total = np.empty(T * B, f)             # softmax denominators, then scale / them
        self.ones = np.ones(max(T * B, K), f)       # sums over rows or columns as products
        self.onehot = np.zeros((T * B, K), f)       # row i: onehot(x_i), for dU as one product
        self.rows = np.arange(T * B)
        self.row_starts = self.rows * K             # where row i of P starts, flat
        self.yix = np.empty(T * B, np.intp)
        self.hot = np.zeros(T * B, np.intp)         # where onehot holds its 1s now
        # OpenBLAS's single-threaded float32 product A^T B slows down sharply once the sum runs
        # over more than a few hundred rows; the weight gradients are then summed over pieces
        # of at most 256 rows. A run's bytes follow the BLAS thread count either way.
        self.pieces = -(-T * B // 256) if f == np.float32 and BLAS.count() == 1 else 1
        self.spare = {}                             # a piece's product, by output shape


def matmul_tn(A: np.ndarray, B: np.ndarray, out: np.ndarray, buf: BatchBuffers) -> None:
    """out = A^T B, summed over buf.pieces runs of A's and B's rows (see BatchBuffers)."""
    pieces = buf.pieces
    if pieces == 1:
        np.matmul(A.T, B, out=out)
        return
    spare = buf.spare.get(out.shape)
    if spare is None:
        spare = buf.spare[out.shape] = np.empty_like(out)
    n = len(A)
    for i in range(pieces):
        lo, hi = n * i // pieces, n * (i + 1) // pieces
        np.matmul(A[lo:hi].T, B[lo:hi], out=out if i == 0 else spare)
        if i:
            out += spare


def output_layer(Hs: np.ndarray, Y: np.ndarray, P: rc.RNN, buf: BatchBuffers, G: rc.RNN, dHs: np.ndarray,
                 scale: float) -> float:
    """The output layer of every row at once: o = V h + c, p = softmax(o), the loss summed over
    the rows of Hs (n, m) against Y (n targets, in float64), and its gradients times scale: dV
    and dc into G, dL/dh into dHs (n, m). Shared by the RNN's batched pass and the LSTM's."""
    n, K = len(Hs), P.K
    Pr, total, ones = buf.P, buf.total, buf.ones
    yix = buf.yix                       # where y_t sits in Pr, flat
    np.add(buf.row_starts, Y.reshape(-1), out=yix)
    flat = Pr.reshape(-1)
    shift = False
    while True:
        np.matmul(Hs, P.V.T, out=Pr)
        Pr += P.c[:, 0]
        if shift:
            Pr -= Pr.max(axis=1, keepdims=True)
        target = float(np.take(flat, yix).sum(dtype=np.float64))
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            np.exp(Pr, out=Pr)
            np.matmul(Pr, ones[:K], out=total)
            log_total = float(np.log(total).sum(dtype=np.float64))
        if shift or math.isfinite(log_total):
            break                       # |o| stays far inside exp's range in practice; where
        shift = True                    # a sum overflows (or all of a row underflows),
    loss = log_total - target           # log-softmax is computed shifted
    np.divide(scale, total, out=total)
    Pr *= total[:, None]
    flat[yix] -= scale                  # dL/do_t = p_t - onehot(y_t), times scale
    matmul_tn(Pr, Hs, G.V, buf)
    np.matmul(ones[:n], Pr, out=G.c[:, 0])
    np.matmul(Pr, P.V, out=dHs)
    return loss


def weight_grads(dA: np.ndarray, Hin: np.ndarray, X: np.ndarray, buf: BatchBuffers, G: rc.RNN) -> None:
    """dW = sum dA h_{t-1}^T, db = sum dA, dU = sum dA x_t^T over the n rows of dA (n, rows of W)
    and Hin (n, m), X the n inputs: three products. Shared by the RNN's batched pass and the LSTM's."""
    n = len(dA)
    matmul_tn(dA, Hin, G.W, buf)
    np.matmul(buf.ones[:n], dA, out=G.b[:, 0])
    onehot = buf.onehot                 # row i: onehot(x_i), for dU as one product
    onehot[buf.rows, buf.hot] = 0.0
    np.copyto(buf.hot, X.reshape(-1))
    onehot[buf.rows, buf.hot] = 1.0
    matmul_tn(dA, onehot, G.U, buf)


def forward_backward_batch(P: rc.RNN, X: np.ndarray, Y: np.ndarray, H0: np.ndarray, buf: BatchBuffers,
                           G: rc.RNN, keep: np.ndarray | None = None, scale: float = 1.0) -> float:
    """Loss summed over all T x B characters of X, Y (T, B); the gradients of scale x that
    loss into G (scale 1 / B: the mean over the streams); h_t into buf.H.

    H0 (B, m) holds each stream's h_0. keep (T, B, 1) of 0.0/1.0, if given, multiplies h_{t-1}
    before step t: 0 starts that stream afresh there (a tweet's start), in the forward pass
    and, through the same product, in the backward pass. Works in the dtype of P, G and buf
    (float64 or float32); the loss is summed in float64.
    """
    T, B = X.shape
    m, n = P.m, T * B
    H, Hin, dH, D, tmp = buf.H, buf.Hin, buf.dH, buf.D, buf.tmp
    H[0] = H0
    np.add(P.U, P.b, out=buf.UbT.T)
    np.take(buf.UbT, X, axis=0, out=H[1:])      # H[t+1] = U x_t + b until step t adds W h_{t-1}
    WT = buf.WT                                 # W^T laid out in memory for the steps' products,
    np.copyto(WT, P.W.T)                        # which read it row by row
    with BLAS.serial():
        for t in range(T):
            if keep is not None:
                np.multiply(H[t], keep[t], out=Hin[t])
            np.dot(Hin[t], WT, out=tmp)
            tmp += H[t + 1]
            np.tanh(tmp, out=H[t + 1])
    Hs = H[1:].reshape(n, m)
    loss = output_layer(Hs, Y, P, buf, G, dH.reshape(n, m), scale)
    dA = dH                             # dL/da_t overwrites dL/dh_t once step t has used it
    with BLAS.serial():
        rc.backward_through_time(dH, H[1:], P.W, D, dA, tmp, keep)
    weight_grads(dA.reshape(n, m), Hin.reshape(n, m), X, buf, G)
    return loss


def resets(X: np.ndarray, reset_ix: int | None, dtype=np.float64) -> np.ndarray | None:
    """keep (T, B, 1): 0.0 where the input is the reset character, else 1.0; None without one."""
    if reset_ix is None:
        return None
    return (X != reset_ix).astype(dtype)[:, :, None]


def loss_and_grads(rnn: rc.RNN, X, Y, H0, *, reset_ix: int | None = None) -> tuple[float, rc.RNN, np.ndarray]:
    """rc.loss_and_grads for B streams side by side: X, Y int arrays (T, B), column j one stream,
    H0 (m, B). The loss is the mean over the streams of each one's summed loss (what training
    uses with batch_size B); h_last has shape (m, B). reset_ix: after this character (the end of
    a tweet) the hidden state restarts from zero. 1-D x, y are one stream."""
    X, Y = np.asarray(X, dtype=np.intp), np.asarray(Y, dtype=np.intp)
    if X.ndim == 1:
        X, Y = X[:, None], Y[:, None]
    T, B = X.shape
    G, _ = rc.RNN.packed(rnn.K, rnn.m)
    buf = BatchBuffers(rnn.K, rnn.m, T, B, reset_ix is not None)
    H0 = np.asarray(H0, dtype=np.float64).reshape(rnn.m, B).T
    loss = forward_backward_batch(rnn, X, Y, H0, buf, G, resets(X, reset_ix), 1 / B) / B
    return loss, G, buf.H[-1].T.copy()
