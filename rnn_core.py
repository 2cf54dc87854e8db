"""rnn_core: a character-level vanilla RNN in numpy (KTH DD2424, Assignment 4).

Letters as in the course: K characters in the vocabulary, m hidden units,
T = seq_length characters per chunk.

    a_t = W h_{t-1} + U x_t + b      h_t = tanh(a_t)
    o_t = V h_t + c                  p_t = softmax(o_t)
    loss = sum_t -log p_t[y_t]       (or its mean over t: the 2025 recipe)

Shapes: b (m, 1), c (K, 1), U (m, K), W (m, m), V (K, m), all float64 (training
can run in float32: see `train`).

Sections follow the assignment: text and vocabulary -> parameters -> the forward and
backward pass of one chunk -> gradient checks -> optimisers -> sampling -> the training
loop (train, and TrainState: everything a run is, which checkpoints save whole). Then what
goes beyond it: the batched pass (mini-batches, shuffled and random chunks), tweets, validation,
files.
Every random draw comes from a numpy.random.Generator passed in by the caller.
"""
from __future__ import annotations

import contextlib
import errno
import html
import json
import math
import os
import re
import signal
import threading
import time
import zipfile
import zlib
from glob import escape as glob_escape
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

__all__ = [
    "RNNError", "load_text", "read_text", "read_bytes", "decode_text", "feed", "load_tweets", "EOT", "Vocab",
    "RNN", "init_rnn", "loss_and_grads", "numerical_grads", "complex_step_grads", "relative_error", "synthesize",
    "TrainState", "History", "train", "evaluate", "save_model", "load_model", "OPTIMIZERS", "INITS",
    "CHUNK_ORDERS", "BEST_BY", "DTYPES",
]


class RNNError(ValueError):
    """A problem with the user's input, stated in one line with its fix."""


# ----------------------------------------------------------------------------- text

def load_text(path) -> str:
    """Read a UTF-8 text file, its line endings as LF; any failure's message names the file and the fix."""
    return read_text(path)[0]


def _as_lf(text: str) -> tuple[str, int]:
    """text with CRLF and lone CR line endings as LF, and how many were converted."""
    n = text.count("\r")
    return (text.replace("\r\n", "\n").replace("\r", "\n"), n) if n else (text, 0)


def check_text_file(path) -> Path:
    """path, if it names a regular file (or a link to one); else RNNError saying what it is.
    Asked before opening: reading a FIFO waits forever, and /dev/zero never ends."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise RNNError(f"{p} is a link to {os.readlink(p)}, which does not exist; give the path of a UTF-8 text file")
    if not p.exists():
        raise RNNError(f"no such file: {p} (give the path of a UTF-8 text file, e.g. DATA=data/shakespeare.txt)")
    if p.is_dir():
        raise RNNError(f"{p} is a folder; give the path of a UTF-8 text file inside it")
    if not p.is_file():
        kind = "a FIFO (named pipe)" if p.is_fifo() else "a device" if p.is_char_device() or p.is_block_device() \
            else "not a regular file"
        raise RNNError(f"{p} is {kind}, not a text file; give the path of a UTF-8 text file")
    return p


def read_text(path) -> tuple[str, int]:
    """load_text's text and the number of line endings it converted to LF (Windows' CRLF and old
    Mac's lone CR): a book saved on another system gives the same characters as one saved here."""
    return decode_text(read_bytes(path), path)


def read_bytes(path) -> bytes:
    """The bytes of a text file, once check_text_file has said it is one."""
    p = check_text_file(path)
    try:
        return p.read_bytes()
    except OSError as err:
        raise RNNError(f"cannot read {p}: {err.strerror or err} (check its permissions)") from None


def decode_text(raw: bytes, path) -> tuple[str, int]:
    """read_text's answer for bytes already read from path (named in the errors)."""
    p = Path(path)
    if not raw.strip():
        raise RNNError(f"{p} is empty; give a text of at least seq_length + 1 characters")
    if b"\x00" in raw[:65536]:
        raise RNNError(f"{p} is a binary file (it has NUL bytes), not text; give a UTF-8 text file")
    try:
        text = raw.decode("utf-8-sig")  # -sig: a leading byte-order mark is not a character of the book
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise RNNError(f"{p} is not UTF-8: byte 0x{raw[err.start]:02x} at line {line}, column {column}; "
                       f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    return _as_lf(text)


# ----------------------------------------------------------------------------- vocabulary

class Vocab:
    """The sorted set of distinct characters of a text, so that it is the same in every process.

    Vocab(text).K is the number of characters; encode(str) -> int array of shape (len,),
    decode(ints) -> str. Vocab(vocab.chars) gives the same vocabulary back.
    """

    def __init__(self, text: str):
        self.chars = "".join(sorted(set(text)))
        if not self.chars:
            raise RNNError("the text is empty, so there is no vocabulary")
        self._code_points = np.array([ord(ch) for ch in self.chars], dtype="<u4")   # index -> code point
        self._lookup = np.full(int(self._code_points.max()) + 1, -1, dtype=np.intp)  # code point -> index
        self._lookup[self._code_points] = np.arange(len(self._code_points))

    @property
    def K(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab(K={self.K}, chars={self.chars!r})"

    def encode(self, text: str, compact: bool = False) -> np.ndarray:
        """Indices of the characters of `text`, shape (len(text),); unknown characters are an error.

        compact=True stores them in the smallest unsigned type that holds K - 1 (one byte per
        character for most books instead of eight): training converts each chunk as it reads it.
        The text is encoded a million characters at a time, so memory stays near the result's.
        """
        dtype = np.intp if not compact else next(t for t in (np.uint8, np.uint16, np.uint32)
                                                  if self.K - 1 <= np.iinfo(t).max)
        out = np.empty(len(text), dtype=dtype)
        block = 1 << 20
        for start in range(0, len(text), block):
            piece = text[start:start + block]
            codes = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
            ix = self._lookup[np.minimum(codes, len(self._lookup) - 1)]
            unknown = (codes >= len(self._lookup)) | (ix < 0)
            if unknown.any():
                bad = sorted({piece[i] for i in np.flatnonzero(unknown)[:1000]})
                raise RNNError(f"characters not in the vocabulary: {''.join(bad)!r}; "
                               f"use only characters of the training text (K={self.K})")
            out[start:start + block] = ix
        return out

    def decode(self, ix) -> str:
        ix = np.asarray(ix)
        if ix.size == 0:
            return ""
        if ix.min() < 0 or ix.max() >= self.K:
            raise RNNError(f"character index out of range 0..{self.K - 1}")
        return self._code_points[ix].tobytes().decode("utf-32-le")   # a million characters in milliseconds


# ----------------------------------------------------------------------------- parameters

@dataclass
class RNN:
    """The five parameter arrays; gradients and optimiser state reuse the same shape."""

    b: np.ndarray  # (m, 1)
    c: np.ndarray  # (K, 1)
    U: np.ndarray  # (m, K)
    W: np.ndarray  # (m, m)
    V: np.ndarray  # (K, m)

    NAMES: ClassVar[tuple] = ("b", "c", "U", "W", "V")

    @property
    def K(self) -> int:
        return self.U.shape[1]

    @property
    def m(self) -> int:
        return self.U.shape[0]

    def arrays(self) -> list:
        return [getattr(self, n) for n in self.NAMES]

    def copy(self) -> "RNN":
        return RNN(*(a.copy() for a in self.arrays()))

    def astype(self, dtype) -> "RNN":
        """The same parameters in dtype; arrays already in it are shared, not copied."""
        return RNN(*(np.asarray(a, dtype=dtype) for a in self.arrays()))

    @staticmethod
    def shapes(K: int, m: int) -> dict:
        return {"b": (m, 1), "c": (K, 1), "U": (m, K), "W": (m, m), "V": (K, m)}

    @classmethod
    def packed(cls, K: int, m: int, dtype=np.float64) -> tuple["RNN", np.ndarray]:
        """A zero RNN whose arrays are views into one flat vector, returned too.

        Clipping and optimiser steps then run as a few calls over the flat vector.
        """
        shapes = cls.shapes(K, m)
        flat = np.zeros(sum(math.prod(s) for s in shapes.values()), dtype=dtype)
        views, start = [], 0
        for name in cls.NAMES:
            size = math.prod(shapes[name])
            views.append(flat[start:start + size].reshape(shapes[name]))
            start += size
        return cls(*views), flat


INITS = ("normal", "xavier")


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        value = int(value)               # 1e5, as make passes N_UPDATES=1e5: the whole number 100000
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RNNError(f"{name} must be a whole number >= {low}, got {value!r}")
    if value < low:
        raise RNNError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise RNNError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not value > 0 or not math.isfinite(value):
        raise RNNError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def init_rnn(K: int, m: int, *, rng: np.random.Generator, init: str = "normal", sigma: float = 0.01) -> RNN:
    """New parameters: b = c = 0 and U, W, V drawn from `rng`.

    init="normal": U, W, V ~ N(0, sigma^2), the 2017-2024 recipe (sigma 0.01).
    init="xavier": U std 1/sqrt(2K), W std 1/sqrt(2m), V std 1/sqrt(m), the 2025 recipe.
    """
    K, m = _check_int("K", K), _check_int("m", m)
    _check_choice("init", init, INITS)
    if init == "normal" and not sigma > 0:
        raise RNNError(f"sigma must be > 0, got {sigma}")
    rnn, _ = RNN.packed(K, m)
    std = {"U": sigma, "W": sigma, "V": sigma} if init == "normal" else \
          {"U": 1 / math.sqrt(2 * K), "W": 1 / math.sqrt(2 * m), "V": 1 / math.sqrt(m)}
    for name in ("U", "W", "V"):
        arr = getattr(rnn, name)
        arr[...] = rng.standard_normal(arr.shape) * std[name]
    return rnn


# ----------------------------------------------------------------------------- forward and backward

class _Buffers:
    """Work arrays for one chunk length T, allocated once per training run."""

    def __init__(self, K: int, m: int, T: int, dtype=np.float64):
        self.H = np.empty((T + 1, m), dtype)   # H[0] = h0, H[t+1] = h_t
        self.P = np.empty((T, K), dtype)       # probabilities, then dL/do
        self.dH = np.empty((T, m), dtype)      # dL/dh_t from the output layer
        self.dA = np.empty((T, m), dtype)      # dL/da_t
        self.D = np.empty((T, m), dtype)       # tanh'(a_t) = 1 - h_t^2
        self.tmp = np.empty(m, dtype)
        self.rows = np.arange(T)
        self.eye = np.eye(K, dtype=dtype)      # one-hot rows, for dU as one matrix product


def _backward_recurrence(dH, Hs, W, D, dA, tmp, keep=None) -> None:
    """dL/da_t for t = T..1 into dA, from dL/dh_t through the output layer (dH) and the hidden
    states h_t (Hs): dL/dh_t = dH_t + W^T dL/da_{t+1}, dL/da_t = dL/dh_t * (1 - h_t^2).

    Shapes (T, m) for one stream or (T, B, m) for B side by side (W is applied from the right
    to rows: dL/da W = (W^T dL/da)^T). dA may be dH itself: step t reads dH[t] before writing
    dA[t]. keep (T, B, 1): where it is 0, step t + 1 started afresh, so dL/dh_t gets nothing
    through it. D receives 1 - h_t^2 and tmp is work space, shape of one step.
    """
    np.multiply(Hs, Hs, out=D)
    np.subtract(1.0, D, out=D)
    T = len(dH)
    np.multiply(dH[T - 1], D[T - 1], out=dA[T - 1])
    for t in range(T - 2, -1, -1):
        np.dot(dA[t + 1], W, out=tmp)   # W^T da_{t+1}, for every stream at once
        if keep is not None:
            tmp *= keep[t + 1]
        tmp += dH[t]
        np.multiply(tmp, D[t], out=dA[t])


def _forward_backward(P: RNN, x: np.ndarray, y: np.ndarray, h0, buf: _Buffers, G: RNN) -> float:
    """Loss summed over the chunk; writes the gradients into G and h_1..h_T into buf.H[1:]."""
    T = len(x)
    H, Pr, dH, dA, D, tmp, rows = buf.H, buf.P, buf.dH, buf.dA, buf.D, buf.tmp, buf.rows
    W = P.W
    H[0] = h0.reshape(-1)
    XU = P.U.T[x]                       # (T, m): U x_t is column x_t of U, no one-hot product
    XU += P.b.T
    for t in range(T):                  # the forward recurrence: the only per-step work
        np.dot(W, H[t], out=tmp)
        tmp += XU[t]
        np.tanh(tmp, out=H[t + 1])
    Hs = H[1:]
    np.dot(Hs, P.V.T, out=Pr)           # all T outputs in one product, (T, K)
    Pr += P.c.T
    Pr -= Pr.max(axis=1, keepdims=True)  # log-softmax, shifted so exp cannot overflow
    target = Pr[rows, y].sum()
    np.exp(Pr, out=Pr)
    total = Pr.sum(axis=1, keepdims=True)
    loss = float(np.log(total).sum() - target)
    Pr /= total
    Pr[rows, y] -= 1.0                  # dL/do_t = p_t - onehot(y_t)
    np.dot(Pr.T, Hs, out=G.V)
    np.sum(Pr, axis=0, out=G.c[:, 0])
    np.dot(Pr, P.V, out=dH)
    _backward_recurrence(dH, Hs, W, D, dA, tmp)
    np.dot(dA.T, H[:-1], out=G.W)       # sum_t da_t h_{t-1}^T in one product
    np.sum(dA, axis=0, out=G.b[:, 0])
    np.dot(dA.T, buf.eye[x], out=G.U)   # sum_t da_t x_t^T
    return loss


def _check_chunk(rnn: RNN, x, y, h0):
    x, y = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    if x.ndim not in (1, 2) or x.shape != y.shape or len(x) < 1 or x.size < 1:
        raise RNNError(f"x and y must be index arrays of one shape (T,) or (T, B), got shapes {x.shape} and {y.shape}")
    for name, ix in (("x", x), ("y", y)):
        if ix.min() < 0 or ix.max() >= rnn.K:
            raise RNNError(f"{name} holds indices outside 0..{rnn.K - 1}")
    h0 = np.asarray(h0, dtype=np.float64)
    B = 1 if x.ndim == 1 else x.shape[1]
    if h0.size != rnn.m * B:
        raise RNNError(f"h0 must have shape ({rnn.m}, {B}), got shape {h0.shape}")
    return x, y, h0


def loss_and_grads(rnn: RNN, x, y, h0, *, reset_ix: int | None = None) -> tuple[float, RNN, np.ndarray]:
    """Cross-entropy summed over the T characters, its unclipped gradients, and h_T.

    x, y : int arrays of shape (T,); h0 : (m, 1). Returns (loss, grads, h_last (m, 1)).
    A mini-batch: x, y of shape (T, B), column j one stream, and h0 (m, B). The loss is then
    the mean over the B streams of each one's summed loss (what `train` uses with batch_size B),
    and h_last has shape (m, B). reset_ix: see `train` (the hidden state restarts after it).
    """
    x, y, h0 = _check_chunk(rnn, x, y, h0)
    G, grad = RNN.packed(rnn.K, rnn.m)
    if x.ndim == 1 and reset_ix is None:
        buf = _Buffers(rnn.K, rnn.m, len(x))
        loss = _forward_backward(rnn, x, y, h0, buf, G)
        return loss, G, buf.H[-1].reshape(-1, 1).copy()
    X, Y = (x, y) if x.ndim == 2 else (x[:, None], y[:, None])
    T, B = X.shape
    buf = _BatchBuffers(rnn.K, rnn.m, T, B, reset_ix is not None)
    H0 = h0.reshape(rnn.m, B).T
    loss = _forward_backward_batch(rnn, X, Y, H0, buf, G, _resets(X, reset_ix), 1 / B) / B
    return loss, G, buf.H[-1].T.copy()


# ----------------------------------------------------------------------------- gradient checks

def _perturbed_losses(P: RNN, x, y, h0, name: str, delta, chunk: int = 2048) -> np.ndarray:
    """Per-character losses of many copies of the model at once, shape (size of `name`, T).

    Copy n has element n (flat order) of parameter `name` moved by `delta`, real or complex.
    The copies run side by side as the rows of one batch, by the plain forward formulas:
    an evaluation independent of the backward pass that it checks.
    """
    K, m, T = P.K, P.m, len(x)
    shape = RNN.shapes(K, m)[name]
    size = math.prod(shape)
    rows, cols = (np.unravel_index(np.arange(size), shape) + (np.zeros(size, dtype=np.intp),))[:2]
    dtype = np.result_type(P.W.dtype, delta)
    XU = (P.U[:, x] + P.b).T                          # (T, m)
    steps = np.arange(T)[:, None]

    def run(r, cc):                                    # losses (T, len(r)) of the copies r, cc
        n, ar = len(r), np.arange(len(r))
        recur = name in ("b", "U", "W")                # c and V leave the hidden states as they are:
        h = np.repeat(h0.reshape(1, m).astype(dtype), n if recur else 1, axis=0)  # run them once
        Hs = np.empty((T, len(h), m), dtype=dtype)
        for t in range(T):
            a = h @ P.W.T + XU[t]
            if name == "b":
                a[ar, r] += delta
            elif name == "U":
                a[ar, r] += delta * (cc == x[t])
            elif name == "W":
                a[ar, r] += delta * h[ar, cc]
            h = Hs[t] = np.tanh(a)
        O = np.repeat(Hs @ P.V.T + P.c.T, 1 if recur else n, axis=1)   # (T, n, K)
        if name == "c":
            O[:, ar, r] += delta
        elif name == "V":
            O[:, ar, r] += delta * Hs[:, 0, cc]
        O -= O.real.max(axis=2, keepdims=True)         # a real shift keeps the loss analytic
        return np.log(np.exp(O).sum(axis=2)) - O[steps, ar[None, :], y[:, None]]

    out = np.empty((size, T), dtype=dtype)
    todo = np.arange(size)
    if name == "U":                                    # a column of U for a character not in x is
        idle = ~np.isin(cols, x)                       # never used: those copies are the base model
        out[idle] = run(rows[:1], np.array([-1])).T
        todo = todo[~idle]
    for s in range(0, len(todo), chunk):               # chunks bound memory (W at m=100: 10,000 copies)
        part = todo[s:s + chunk]
        out[part] = run(rows[part], cols[part]).T
    return out


def numerical_grads(rnn: RNN, x, y, h0, *, h: float = 1e-4) -> RNN:
    """Centred differences (L(theta + h) - L(theta - h)) / 2h for every element.

    The difference is taken character by character before summing over the chunk, which keeps
    round-off near that of one character's loss (about 4) instead of the chunk's (about 100).
    """
    x, y, h0 = _check_chunk(rnn, x, y, h0)
    P = rnn.copy()
    out = []
    for name, a in zip(RNN.NAMES, P.arrays()):
        diff = _perturbed_losses(P, x, y, h0, name, h) - _perturbed_losses(P, x, y, h0, name, -h)
        out.append((diff.sum(axis=1) / (2 * h)).reshape(a.shape))
    return RNN(*out)


def complex_step_grads(rnn: RNN, x, y, h0, *, step: float = 1e-30) -> RNN:
    """dL/dtheta = Im L(theta + i*step) / step: no subtraction, so exact to machine precision."""
    x, y, h0 = _check_chunk(rnn, x, y, h0)
    P = rnn.copy()
    out = []
    for name, a in zip(RNN.NAMES, P.arrays()):
        losses = _perturbed_losses(P, x, y, h0, name, 1j * step)
        out.append((losses.imag.sum(axis=1) / step).reshape(a.shape))
    return RNN(*out)


def relative_error(ga, gn, eps: float = 1e-6) -> np.ndarray:
    """|ga - gn| / max(eps, |ga| + |gn|), element by element: the course's measure."""
    ga, gn = np.asarray(ga), np.asarray(gn)
    return np.abs(ga - gn) / np.maximum(eps, np.abs(ga) + np.abs(gn))


# ----------------------------------------------------------------------------- optimisers

OPTIMIZERS = ("adagrad", "rmsprop", "adam")


# A field so marked is a setting or a work array: rebuilt from the run's settings, never saved
# with the run's state (see TrainState).
_NOT_STATE = {"state": False}


@dataclass
class _Optimizer:
    """One step over the flat parameter vector theta, given the flat gradient g.

    M, S and t are the optimiser's state, saved and restored with the run (TrainState);
    name and eta are settings.
    """

    name: str = field(metadata=_NOT_STATE)
    eta: float = field(metadata=_NOT_STATE)
    M: np.ndarray            # (n,) AdaGrad's sum of g^2, RMSProp's running mean of g^2, Adam's 1st moment
    S: np.ndarray            # (n,) Adam's second moment; (0,) for the others
    t: int = 0               # steps taken (Adam's bias correction uses it)
    tmp: np.ndarray = field(init=False, repr=False, metadata=_NOT_STATE)

    def __post_init__(self):
        self.tmp = np.empty_like(self.M)

    @classmethod
    def new(cls, name: str, size: int, eta: float, dtype=np.float64) -> "_Optimizer":
        return cls(name, eta, np.zeros(size, dtype), np.zeros(size if name == "adam" else 0, dtype))

    def step(self, theta: np.ndarray, g: np.ndarray) -> None:
        M, S, tmp, eta = self.M, self.S, self.tmp, self.eta
        self.t += 1
        if self.name == "adagrad":                   # M += g^2; theta -= eta g / sqrt(M + eps)
            np.multiply(g, g, out=tmp)
            M += tmp
            np.add(M, 1e-8, out=tmp)
        elif self.name == "rmsprop":                 # M = 0.9 M + 0.1 g^2
            np.multiply(g, g, out=tmp)
            tmp *= 0.1
            M *= 0.9
            M += tmp
            np.add(M, 1e-8, out=tmp)
        else:                                        # Adam, bias-corrected, eps 1e-8
            M *= 0.9
            np.multiply(g, 0.1, out=tmp)
            M += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 0.001
            S *= 0.999
            S += tmp
            np.divide(S, 1 - 0.999 ** self.t, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += 1e-8
            np.divide(M, tmp, out=tmp)
            theta -= (eta / (1 - 0.9 ** self.t)) * tmp
            return
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= eta
        theta -= tmp


# ----------------------------------------------------------------------------- sampling

def _check_top_p(top_p) -> float:
    if isinstance(top_p, bool) or not (isinstance(top_p, (int, float, np.floating)) and 0 < top_p <= 1):
        raise RNNError(f"top_p must be in (0, 1], got {top_p!r}")
    return float(top_p)


def feed(rnn: RNN, h0, ix) -> np.ndarray:
    """The hidden state (m, 1) after the model reads the characters ix, from h0 (m, 1): how a
    prime text sets the state that sampling continues from."""
    rnn = rnn.astype(np.float64)
    h = np.array(h0, dtype=np.float64).reshape(-1)
    if h.size != rnn.m:
        raise RNNError(f"h0 must have m={rnn.m} entries, got shape {np.shape(h0)}")
    for x in np.asarray(ix, dtype=np.intp).tolist():
        h = np.tanh(rnn.W @ h + rnn.U[:, x] + rnn.b[:, 0])
    return h.reshape(-1, 1)


def synthesize(rnn: RNN, h0, x0: int, n: int, *, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0, stop_ix: int | None = None,
               greedy: bool = False) -> np.ndarray:
    """Draw n characters, each from p_t by its cumulative sum, starting from h0 (m, 1) and input x0.

    temperature divides the logits; top_p keeps the smallest set of most probable characters
    whose total probability reaches top_p, renormalised. greedy: the most probable character
    every time (the limit of temperature -> 0; no random draws). Returns int array of shape (n,).
    stop_ix: stop early when this character (the end of a tweet) is drawn; it is not returned.
    """
    if not (isinstance(temperature, (int, float, np.floating)) and temperature > 0 and math.isfinite(temperature)):
        raise RNNError(f"temperature must be > 0, got {temperature!r}")
    _check_top_p(top_p)
    n = _check_int("n", n, low=0)
    if not (isinstance(x0, (int, np.integer)) and 0 <= x0 < rnn.K):
        raise RNNError(f"x0 must be a character index in 0..{rnn.K - 1}, got {x0!r}")
    h = np.array(h0, dtype=np.float64).reshape(-1)
    if h.size != rnn.m:
        raise RNNError(f"h0 must have m={rnn.m} entries, got shape {np.shape(h0)}")
    K, m = rnn.K, rnn.m
    rnn = rnn.astype(np.float64)         # a float32 model too
    W = rnn.W
    XU = (rnn.U + rnn.b).T.copy()        # (K, m): row k is U x + b for x = character k, done once
    Vc = np.hstack([rnn.V, rnn.c]) / temperature  # (K, m+1): [V c] [h; 1] = V h + c in one product;
    hh = np.ones(m + 1)                  # temperature is folded into the weights
    hh[:m] = h
    h = hh[:m]                           # a view: tanh writes h_t straight into [h; 1]
    # |o_k| <= sum_j |Vc_kj| since |h_j| <= 1: while that stays far below exp's overflow
    # at 709, softmax needs no max-shift.
    shift = float(np.abs(Vc).sum(axis=1).max()) > 600
    u = [] if greedy else rng.random(n).tolist()   # all uniform draws at once
    out = np.empty(n, dtype=np.intp)
    a, o, cp = np.empty(m), np.empty(K), np.empty(K)
    accumulate = np.add.accumulate       # cumsum without np.cumsum's Python wrapper (3x faster here)
    x = int(x0)
    for i in range(n):
        np.dot(W, h, out=a)
        a += XU[x]
        np.tanh(a, out=h)
        np.dot(Vc, hh, out=o)
        if shift:
            o -= o.max()
        np.exp(o, out=o)                 # unnormalised p_t: the draw below scales u instead
        if top_p < 1.0:
            order = np.argsort(-o, kind="stable")
            mass = accumulate(o[order])
            keep = int(mass.searchsorted(top_p * mass[-1])) + 1   # first prefix reaching top_p
            o[order[keep:]] = 0.0
        if greedy:
            x = int(o.argmax())
        else:
            accumulate(o, out=cp)
            x = int(cp.searchsorted(u[i] * cp[-1], "right"))   # first k with cp_k > u
        if x == stop_ix:
            return out[:i]
        out[i] = x
    return out


# ----------------------------------------------------------------------------- training

CHUNK_ORDERS = ("sequential", "shuffled", "random")
BEST_BY = ("smooth", "val")
DTYPES = ("float64", "float32")

_PER_UPDATE = {"per_update": True}   # an array with an entry per update: its first k are the state
_RAGGED = {"ragged": True}           # a list of int arrays of different lengths


@dataclass
class History:
    """What a training run records.

    loss, smooth_loss : float arrays of shape (updates done,), entry k for update k + 1
    epoch : int array of the same shape, the epoch (0-based) each update belongs to
    samples : list of (updates done, smooth loss then, text); the first at 0 updates
    val_update, val_loss : when a validation text is given, the updates after which it was
        scored and its loss there, in nats per character
    best : the parameters with the lowest smooth loss (or validation loss, best_by="val"),
        reached after best_update updates; best_smooth_loss is the smooth loss then. None when
        training diverged and the best model was the one whose loss became NaN or infinite
    best_h, best_x : the hidden state (m,) the best model carried then and the character that
        came next in the text: a state the model knows, to sample from
    last_h : the hidden state (m,) that training carries at the end (stream 0's)
    stopped : "" when all n_updates ran, "interrupted" (Ctrl-C) or "diverged" (NaN or
        infinite loss); message says what happened and what to do
    resumed_from : the update the run continued from, 0 for a fresh run
    seconds : training time over every session of the run (a resumed run's included)
    """

    loss: np.ndarray
    smooth_loss: np.ndarray
    epoch: np.ndarray
    samples: list = field(default_factory=list)
    val_update: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best: RNN | None = None
    best_h: np.ndarray | None = None
    best_x: int = 0
    last_h: np.ndarray | None = None
    best_update: int = 0
    best_smooth_loss: float = math.inf
    best_val_loss: float = math.nan
    stopped: str = ""
    message: str = ""
    resumed_from: int = 0
    seconds: float = 0.0

    @property
    def updates(self) -> int:
        return len(self.loss)


def train(rnn: RNN, data, *, n_updates: int, rng: np.random.Generator, seq_length: int = 25,
          eta: float = 0.1, optimizer: str = "adagrad", clip: float = 5.0, loss_reduction: str = "sum",
          sample_every: int = 10_000, sample_length: int = 200,
          progress: Callable[[int, float], None] | None = None,
          batch_size: int = 1, chunk_order: str = "sequential", reset_ix: int | None = None,
          val_data=None, val_every: int = 5000, best_by: str = "smooth",
          checkpoint=None, checkpoint_every: int = 10_000, resume: bool = False,
          info: dict | None = None, dtype: str = "float64") -> History:
    """Train `rnn` in place with the assignment's loop and return its History.

    data : int array of shape (N,), the encoded text. The position e steps by seq_length;
    hprev carries over between chunks; when e > N - seq_length - 1, e returns to 0 and hprev
    to zeros (a new epoch). Gradients are clipped element-wise to [-clip, clip].
    smooth_loss starts at the first loss, then 0.999 smooth_loss + 0.001 loss.
    loss_reduction "sum" (2017-2024) or "mean" over the chunk (2025).
    Samples of sample_length characters are drawn with h0 = hprev and x0 = the current input,
    at 0 updates and every sample_every updates. progress(updates_done, smooth_loss) is called
    at the start (with the update a resumed run starts from), every 100 updates and at the end.

    batch_size B > 1: B streams read the text side by side from B evenly spaced positions
        (each its own piece of (N - 1) // B characters, with its own hprev); one update per
        B x seq_length characters. An update's loss (and so its gradient) is the mean over
        the B streams of each stream's chunk loss, so the loss keeps the scale of B = 1.
    chunk_order "shuffled": every epoch visits the chunk starts 0, T, 2T, ... once each in a
        new random order, each chunk from hprev = 0 (with B > 1, B chunks per update; the last
        fewer than B of an epoch are left out). "random": every update's chunk starts at a
        uniformly random position of the text, from hprev = 0 (each of B streams its own);
        an epoch is then a text's length of characters read.
    reset_ix : a character index (the end of a tweet) after which the hidden state restarts
        from zero: when it is the input x_t, h_{t-1} is taken as 0.
    val_data : an encoded held-out text; scored every val_every updates and at the end
        (`evaluate`, nats per character). best_by="val" picks the best model by that score.
    checkpoint : a file path. Every checkpoint_every updates, at the end, and when stopped by
        Ctrl-C, the whole TrainState (parameters, optimiser, position, hprev, smooth loss,
        history, best model, random generator, time) is written there atomically. resume=True
        continues from it up to n_updates, giving the same History, bit for bit, as a run never
        stopped. info (JSON-able, e.g. the vocabulary) is stored with it and must match on resume.
    dtype "float32": parameters, gradients, optimiser state and the forward and backward
        passes in float32 (losses are still summed in float64). About twice as fast with
        mini-batches; digits beyond float32's 7 differ from a float64 run. Samples, validation
        scores and the returned models are computed and stored in float64.
    Ctrl-C stops between two updates: the History so far is returned with stopped="interrupted".
    A NaN or infinite loss stops before that update, stopped="diverged"; the checkpoint file
    keeps the last good state, and History.best is None if the best model so far is the one
    whose loss that was.
    """
    n_updates = _check_int("n_updates", n_updates)
    eta, clip = _check_positive("eta", eta), _check_positive("clip", clip)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("loss_reduction", loss_reduction, ("sum", "mean"))
    _check_choice("chunk_order", chunk_order, CHUNK_ORDERS)
    _check_choice("best_by", best_by, BEST_BY)
    f = np.dtype(_check_choice("dtype", dtype, DTYPES))
    data = _indices(data)
    K, m = rnn.K, rnn.m
    reader = _Reader(data, K, m, T=_check_int("seq_length", seq_length), B=_check_int("batch_size", batch_size),
                     order=chunk_order, reset_ix=reset_ix, loss_reduction=loss_reduction, dtype=f)
    if val_data is not None:
        val_data = _indices(val_data)
        if len(val_data) < 2 or val_data.min() < 0 or val_data.max() >= K:
            raise RNNError("val_data must be an encoded text of at least 2 characters of the same vocabulary")
    elif best_by == "val":
        raise RNNError('best_by="val" needs a validation text: set val_fraction > 0')
    if resume and checkpoint is None:
        raise RNNError("resume=True needs the checkpoint file to continue from")
    # what a checkpoint must agree with to be resumed (n_updates may grow)
    config = {"K": K, "m": m, "seq_length": reader.T, "eta": eta, "optimizer": optimizer, "clip": clip,
              "loss_reduction": loss_reduction, "sample_every": _check_int("sample_every", sample_every),
              "sample_length": _check_int("sample_length", sample_length, low=0), "batch_size": reader.B,
              "chunk_order": chunk_order, "reset_ix": None if reset_ix is None else int(reset_ix),
              "val_every": _check_int("val_every", val_every), "best_by": best_by, "data": _fingerprint(data),
              "val_data": None if val_data is None else _fingerprint(val_data), "dtype": dtype,
              "info": info or {}}
    watch = _Watch(n_updates=n_updates, sample_every=sample_every, sample_length=sample_length, progress=progress,
                   train_data=data, val_data=val_data, val_every=val_every, best_by=best_by, reset_ix=reset_ix,
                   checkpoint=checkpoint, checkpoint_every=_check_int("checkpoint_every", checkpoint_every),
                   config=config)

    st = TrainState.new(rnn, n_updates=n_updates, batch_size=reader.B, n_order=reader.n_order, optimizer=optimizer,
                        eta=eta, rng=rng, dtype=f)
    if resume:
        st.load_state_dict(_read_checkpoint(Path(checkpoint), config, n_updates), checkpoint)
        reader.check_resumed(st, K, checkpoint)
    else:
        reader.start(st)
    watch.begin(st)
    stopped = message = ""
    lost_best = False
    with _SigintFlag() as sigint, np.errstate(over="ignore", invalid="ignore"):  # a NaN is caught below
        while True:
            if sigint.hit and st.k < n_updates:
                stopped, message = "interrupted", watch.stop_by_signal(st, sigint.hit)   # saves the run so far
                break
            if watch.checkpoint_due(st.k):
                watch.save(st)
            starts = reader.next_chunk(st)               # the next chunk of each stream
            watch.sample(st, int(data[starts[0]]))       # every sample_every updates
            if st.k == n_updates:
                break
            loss = reader.learn(st, starts)              # forward and backward pass
            if not math.isfinite(loss):
                stopped, message = "diverged", watch.diverged(st, loss, eta=eta, clip=clip)
                lost_best = watch.best_diverged(st)
                break
            np.clip(reader.grad, -clip, clip, out=reader.grad)   # one pass: 3x faster than min then max
            st.opt.step(st.theta, reader.grad)
            st.record(loss)                              # smooth loss and history; k + 1
            watch.after_update(st, next_x=int(data[starts[0] + reader.T]))   # best model, validation
            reader.advance(st)
    watch.end(st)
    hist = st.history()
    hist.stopped, hist.message, hist.resumed_from = stopped, message, watch.k0
    if stopped == "diverged" and lost_best:
        hist.best = None
    for dst, src in zip(rnn.arrays(), st.P.arrays()):
        dst[...] = src
    return hist


@dataclass
class TrainState:
    """Everything a training run is after k updates.

    A checkpoint writes it whole (state_dict) and a resume reads it whole (load_state_dict):
    a field added here is saved and restored with no other line changing. Fields marked
    _NOT_STATE are rebuilt from the settings instead.
    """

    theta: np.ndarray            # (n,) the parameters b, c, U, W, V, flat, in the run's dtype
    opt: _Optimizer              # the optimiser's state: M, S (flat like theta) and t
    hprev: np.ndarray            # (B, m) the hidden state each stream carries into its next chunk
    order: np.ndarray            # shuffled chunks: this epoch's chunk numbers, in the order read
    rng: np.random.Generator     # the run's generator (its state is saved)
    best: np.ndarray             # (n,) the best parameters so far,
    best_h: np.ndarray           # (m,) and the hidden state they carried then (stream 0's),
    loss: np.ndarray = field(metadata=_PER_UPDATE)           # (n_updates,) the loss of each update
    smooth_loss: np.ndarray = field(metadata=_PER_UPDATE)    # (n_updates,) the smooth loss after it
    epoch: np.ndarray = field(metadata=_PER_UPDATE)          # (n_updates,) the epoch it belongs to
    k: int = 0                   # updates done
    e: int = 0                   # sequential chunks: where stream 0's next chunk starts
    pos: int = 0                 # shuffled chunks: how many of `order` are done
    current_epoch: int = 0
    smooth: float = 0.0          # the smooth loss after update k
    sample_update: list = field(default_factory=list)                     # samples: when drawn,
    sample_text: list = field(default_factory=list, metadata=_RAGGED)     # and their characters
    val_update: list = field(default_factory=list)   # validation: the updates scored after,
    val_loss: list = field(default_factory=list)     # and the held-out loss per character there
    best_x: int = 0              # with the character that came next: where sampling starts
    best_update: int = 0
    best_smooth_loss: float = math.inf
    best_val_loss: float = math.nan
    seconds: float = 0.0         # training time, over every session of the run
    P: RNN | None = field(default=None, repr=False, metadata=_NOT_STATE)   # theta as b, c, U, W, V

    @classmethod
    def new(cls, rnn: RNN, *, n_updates: int, batch_size: int, n_order: int, optimizer: str, eta: float,
            rng: np.random.Generator, dtype) -> "TrainState":
        """The state before the first update: rnn's parameters (copied, in dtype), h = 0;
        n_order is the length of `order` (the number of chunks when they are shuffled, else 0)."""
        P, theta = RNN.packed(rnn.K, rnn.m, dtype)
        for dst, src in zip(P.arrays(), rnn.arrays()):
            dst[...] = src
        return cls(theta=theta, opt=_Optimizer.new(optimizer, theta.size, eta, dtype),
                   hprev=np.zeros((batch_size, rnn.m), dtype), order=np.zeros(n_order, np.int64), rng=rng,
                   best=theta.copy(), best_h=np.zeros(rnn.m, dtype), loss=np.empty(n_updates),
                   smooth_loss=np.empty(n_updates),
                   epoch=np.empty(n_updates, np.int64), P=P)

    def record(self, loss: float) -> None:
        """Update k + 1 is done: smooth its loss and keep both."""
        k = self.k
        self.smooth = loss if k == 0 else 0.999 * self.smooth + 0.001 * loss
        self.loss[k], self.smooth_loss[k], self.epoch[k] = loss, self.smooth, self.current_epoch
        self.k = k + 1

    def keep_best(self, smooth_loss: float, next_x: int) -> None:
        """The model after update k is the best so far: keep it, with the hidden state it carries
        and the character that comes next (a passage from it starts there)."""
        self.best_update, self.best_smooth_loss, self.best_x = self.k, smooth_loss, next_x
        np.copyto(self.best, self.theta)
        np.copyto(self.best_h, self.hprev[0])

    def state_dict(self) -> dict:
        """Every saved field by name: what a checkpoint file holds (see _state_dict)."""
        return _state_dict(self)

    def load_state_dict(self, saved: dict, where) -> None:
        """Every saved field from `saved`, checked (see _load_state_dict); where names the source."""
        _load_state_dict(self, saved, where)

    def history(self) -> "History":
        """The run so far as a History (models as float64; samples labelled with the smooth loss)."""
        k = self.k
        best, best_flat = RNN.packed(self.P.K, self.P.m)
        best_flat[...] = self.best
        # sample j was drawn from the model after j updates: label it with the smooth loss then
        samples = [(j, float(self.smooth_loss[max(j - 1, 0)]) if k else math.nan, ix)
                   for j, ix in zip(self.sample_update, self.sample_text)]
        return History(loss=self.loss[:k], smooth_loss=self.smooth_loss[:k], epoch=self.epoch[:k],
                       samples=samples, val_update=np.array(self.val_update, dtype=np.int64),
                       val_loss=np.array(self.val_loss, dtype=np.float64), best=best,
                       best_h=self.best_h.astype(np.float64), best_x=self.best_x,
                       last_h=self.hprev[0].astype(np.float64),
                       best_update=self.best_update, best_smooth_loss=self.best_smooth_loss,
                       best_val_loss=self.best_val_loss, seconds=self.seconds)


def _indices(data) -> np.ndarray:
    """An encoded text as an integer array, without a copy when it is one already (a compact
    one, Vocab.encode(compact=True), stays compact: a 200 MB book is not made 1.6 GB)."""
    a = np.asarray(data)
    if a.dtype.kind not in "iu":
        a = np.asarray(data, dtype=np.intp)
    return a.reshape(-1)


def check_reading(N: int, T: int, B: int, order: str) -> None:
    """A training text of N characters can be read in chunks of T characters by B streams side by
    side (sequential order) or B shuffled chunks at a time; else a one-line RNNError with the fix."""
    if N < T + 1:
        raise RNNError(f"the text has {N} characters, fewer than seq_length + 1 = {T + 1}; "
                       f"use a longer text or a smaller seq_length")
    if order == "sequential" and (N - 1) // B < T:
        raise RNNError(f"batch_size {B} leaves {(N - 1) // B} characters per stream, fewer than seq_length = {T}; "
                       f"use a smaller batch_size (at most {(N - 1) // T})")
    if order != "sequential" and (N - 1) // T < B:
        raise RNNError(f"the text has {(N - 1) // T} chunks of seq_length = {T}, fewer than batch_size = {B}")


class _Reader:
    """How training reads the text: which chunk each update learns from (in the assignment's
    order, B streams side by side, or shuffled), and the pass that learns from it."""

    def __init__(self, data: np.ndarray, K: int, m: int, *, T: int, B: int, order: str, reset_ix,
                 loss_reduction: str, dtype):
        N = len(data)
        check_reading(N, T, B, order)
        if data.min() < 0 or data.max() >= K:
            raise RNNError(f"data holds indices outside 0..{K - 1}: encode the text with the model's vocabulary")
        self.L = (N - 1) // B                 # characters each stream reads (sequential order)
        self.n_chunks = (N - 1) // T          # chunk starts (shuffled order)
        if reset_ix is not None and not (isinstance(reset_ix, (int, np.integer)) and 0 <= reset_ix < K):
            raise RNNError(f"reset_ix must be a character index in 0..{K - 1}, got {reset_ix!r}")
        self.data, self.T, self.B, self.order, self.reset_ix, self.dtype = data, T, B, order, reset_ix, dtype
        self.batched = B > 1 or reset_ix is not None or order != "sequential"
        self.buf = _BatchBuffers(K, m, T, B, reset_ix is not None, dtype) if self.batched \
            else _Buffers(K, m, T, dtype)
        self.G, self.grad = RNN.packed(K, m, dtype)     # the gradients, as b, c, U, W, V and flat
        self.stream_starts = np.arange(B) * self.L
        self.steps_and_one = np.arange(T + 1)[:, None]
        self.scale = (1.0 / T if loss_reduction == "mean" else 1.0) / B

    @property
    def n_order(self) -> int:
        """The length of TrainState.order: the chunks of one shuffled epoch (none in sequence)."""
        return self.n_chunks if self.order == "shuffled" else 0

    def start(self, st: TrainState) -> None:
        """A fresh run: the first epoch's order of chunks, when they are shuffled."""
        if self.order == "shuffled":
            st.order = st.rng.permutation(self.n_chunks)

    def next_chunk(self, st: TrainState) -> np.ndarray:
        """Where each stream's next chunk starts, shape (B,). At the end of the text a new epoch
        starts from the beginning (or a new shuffled order) with h = 0."""
        if self.order == "sequential":
            if st.e > self.L - self.T:        # B = 1: e > N - T - 1, the assignment's test
                st.e, st.current_epoch = 0, st.current_epoch + 1
                st.hprev[:] = 0.0
            return self.stream_starts + st.e
        st.hprev[:] = 0.0                     # each shuffled or random chunk from h = 0
        if self.order == "random":            # any start s with s + T + 1 <= N, uniformly
            st.current_epoch = st.k * self.B * self.T // (len(self.data) - 1)
            return st.rng.integers(0, len(self.data) - self.T, size=self.B)
        if st.pos + self.B > self.n_chunks:
            st.order, st.pos, st.current_epoch = st.rng.permutation(self.n_chunks), 0, st.current_epoch + 1
        return st.order[st.pos:st.pos + self.B] * self.T

    def learn(self, st: TrainState, starts: np.ndarray) -> float:
        """Forward and backward pass of the chunks at `starts`: their loss (summed or averaged as
        the run's loss_reduction says, mean over streams), its gradient in self.grad, and the
        last hidden states carried into st.hprev."""
        buf, T = self.buf, self.T
        if self.batched:
            XY = self.data[starts[None, :] + self.steps_and_one].astype(np.intp, copy=False)   # (T + 1, B):
            X, Y = XY[:-1], XY[1:]                                 # X is rows 0..T-1, Y rows 1..T
            loss = _forward_backward_batch(st.P, X, Y, st.hprev, buf, self.G,
                                           _resets(X, self.reset_ix, self.dtype), self.scale) * self.scale
        else:
            xy = self.data[st.e:st.e + T + 1].astype(np.intp, copy=False)
            loss = _forward_backward(st.P, xy[:-1], xy[1:], st.hprev[0], buf, self.G) * self.scale
            if self.scale != 1.0:             # the batched pass scales its gradients itself
                self.grad *= self.scale
        st.hprev[...] = buf.H[T]
        return loss

    def check_resumed(self, st: TrainState, K: int, where) -> None:
        """A state read from a checkpoint fits this text and model: every position inside the
        text, every count in range, every number finite (a damaged file would otherwise resume
        into a silently different run)."""
        def bad(what):
            raise RNNError(f"{where}: {what}; the file is damaged: delete it and start the run again")
        if not 0 <= st.e <= self.L:
            bad(f"its position e = {st.e:,} is outside the text's {self.L:,} characters")
        if self.order == "shuffled" and (not 0 <= st.pos <= self.n_chunks or len(st.order) and
                                         (st.order.min() < 0 or st.order.max() >= self.n_chunks)):
            bad(f"its shuffled order points outside the text's {self.n_chunks:,} chunks")
        if st.current_epoch < 0 or st.k and st.current_epoch < st.epoch[st.k - 1]:
            bad(f"its epoch {st.current_epoch} is out of range")
        if len(st.sample_update) != len(st.sample_text) or len(st.val_update) != len(st.val_loss):
            bad("its samples or validation scores do not pair up")
        if any(len(t) and (t.min() < 0 or t.max() >= K) for t in st.sample_text):
            bad(f"its samples hold characters outside the vocabulary of {K}")
        if any(not 0 <= u <= st.k for u in (*st.sample_update, *st.val_update, st.best_update)):
            bad(f"it names updates beyond its own {st.k:,}")
        if not 0 <= st.best_x < K:
            bad(f"its best model's next character {st.best_x} is outside the vocabulary of {K}")
        for name in ("theta", "best", "hprev", "best_h"):
            if not np.isfinite(getattr(st, name)).all():
                bad(f"{name} holds NaN or infinite values")
        if not (np.isfinite(st.opt.M).all() and np.isfinite(st.opt.S).all() and st.opt.t >= 0):
            bad("its optimiser state holds NaN, infinite or negative values")

    def advance(self, st: TrainState) -> None:
        if self.order == "sequential":
            st.e += self.T
        elif self.order == "shuffled":
            st.pos += self.B


class _Watch:
    """How a run is watched: samples of text, held-out scores and the best model by them,
    progress, and checkpoints (with the time they have cost so far)."""

    def __init__(self, *, n_updates, sample_every, sample_length, progress, train_data, val_data, val_every,
                 best_by, reset_ix, checkpoint, checkpoint_every, config):
        self.n_updates, self.sample_every, self.sample_length = n_updates, sample_every, sample_length
        self.progress, self.val_data, self.val_every, self.best_by = progress, val_data, val_every, best_by
        self.reset_ix, self.checkpoint, self.checkpoint_every = reset_ix, checkpoint, checkpoint_every
        self.train_data, self.config = train_data, config

    def begin(self, st: TrainState) -> None:
        self.k0 = st.k
        self.saved_at = st.k if st.k else None     # a resumed run's file holds update k0; a new run's none yet
        self.clock, self.seconds0 = time.perf_counter(), st.seconds
        if self.progress is not None:         # where the run starts: 0, or where it resumes
            self.progress(st.k, st.smooth)
        if st.val_update and st.val_update[-1] % self.val_every:   # the last session's closing
            del st.val_update[-1], st.val_loss[-1]   # score: a run never stopped has none there

    def checkpoint_due(self, k: int) -> bool:
        return k > self.k0 and (k % self.checkpoint_every == 0 or k == self.n_updates)

    def save(self, st: TrainState) -> None:
        """The state before update k + 1, which a resume starts from."""
        st.seconds = self.seconds0 + time.perf_counter() - self.clock
        if self.checkpoint is not None:
            _write_checkpoint(Path(self.checkpoint), self.config, st.state_dict())
            self.saved_at = st.k

    def stop_by_signal(self, st: TrainState, by: str) -> str:
        self.save(st)
        return (f"training stopped by {by} after {st.k:,} of {self.n_updates:,} updates; "
                f"the run so far is kept, and resume=True continues it")

    def best_diverged(self, st: TrainState) -> bool:
        """Whether the best model so far is the one whose loss just became NaN or infinite: the
        model after update k, when it is the best by smooth loss, has not had a finite loss."""
        return self.best_by == "smooth" and st.best_update == st.k

    def diverged(self, st: TrainState, loss: float, *, eta: float, clip: float) -> str:
        """What happened, and only what exists: the checkpoint if one was written, the best model
        if one had a finite loss."""
        last = f"; the last finite smooth loss was {st.smooth:.4g} at update {st.k:,}" if st.k else ""
        kept = (f"; the checkpoint keeps update {self.saved_at:,}" if self.checkpoint is not None and
                self.saved_at is not None else "; no checkpoint was written before it")
        best = ("; no best model is kept: the best so far is the model whose loss this is"
                if self.best_diverged(st) else f"; the best model is that of update {st.best_update:,}")
        return (f"the loss became {loss} at update {st.k + 1:,}{last}. Lower eta (now {eta:g}) or clip "
                f"(now {clip:g}) and train again" + (kept if self.checkpoint is not None else "") + best)

    def sample(self, st: TrainState, x0: int) -> None:
        """Every sample_every updates: sample_length characters from hprev and the input x0."""
        if st.k % self.sample_every == 0 and self.sample_length:
            st.sample_update.append(st.k)
            st.sample_text.append(synthesize(st.P, st.hprev[0], x0, self.sample_length, rng=st.rng))

    def after_update(self, st: TrainState, next_x: int) -> None:
        """After update k: the best model by smooth loss; every val_every updates and at the
        end, the held-out score (and the best model by it); progress every 100 updates.
        next_x is the character after the chunk just learned: the input that comes next."""
        k = st.k
        if self.best_by == "smooth" and st.smooth < st.best_smooth_loss:
            st.keep_best(st.smooth, next_x)
        if self.val_data is not None and (k % self.val_every == 0 or k == self.n_updates):
            # as a continuation: from the state training carries, through the end of the training text
            v = evaluate(st.P, self.val_data, h0=st.hprev[0], context=self.train_data, reset_ix=self.reset_ix)
            st.val_update.append(k)
            st.val_loss.append(v)
            if self.best_by == "val" and k % self.val_every == 0 and not v >= st.best_val_loss:  # also the first (nan)
                st.best_val_loss = v
                st.keep_best(float(st.smooth_loss[k - 1]), next_x)
        if self.progress is not None and k % 100 == 0:
            self.progress(k, st.smooth)

    def end(self, st: TrainState) -> None:
        st.seconds = self.seconds0 + time.perf_counter() - self.clock
        if self.progress is not None and st.k % 100:
            self.progress(st.k, st.smooth)


def _fingerprint(data: np.ndarray) -> str:
    """The text's length and the CRC-32 of its indices as int64 (a block at a time: no copy of it all)."""
    crc, block = 0, 1 << 20
    for start in range(0, len(data), block):
        crc = zlib.crc32(np.ascontiguousarray(data[start:start + block], dtype=np.int64).tobytes(), crc)
    return f"{len(data)}:{crc:08x}"


class _SigintFlag:
    """While active, Ctrl-C (SIGINT), SIGTERM and SIGHUP set .hit instead of stopping the
    process: the loop stops between updates and keeps the run so far.

    A second one raises KeyboardInterrupt. Only the main thread can take signals; elsewhere
    this does nothing.
    """
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.hit, self._old = False, {}

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


# =============================================================================
# Beyond the assignment: mini-batches (the batched pass), tweets, validation, files.
# =============================================================================

# ----------------------------------------------------------------------------- the batched pass


class _BlasThreads:
    """Runs the recurrences' small products on one BLAS thread; the big products keep the rest.

    Each step of a recurrence is a (B, m) x (m, m) product, too small for threads to pay
    (two threads made the steps 15-20% slower here), while the products over all T x B rows
    at once are twice as fast on two. OpenBLAS sets one count for the whole process, so it is
    switched around each loop, through threadpoolctl (a no-op without it, or with one thread).
    """

    def __init__(self):
        self._libs = None

    def _blas(self) -> list:
        if self._libs is None:
            try:
                from threadpoolctl import ThreadpoolController
                self._libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
            except Exception:            # threadpoolctl missing or unable to see the library
                self._libs = []
        return self._libs

    def count(self) -> int:
        """Threads the BLAS library runs on now (the largest, if several are loaded); 0 if unknown."""
        return max((lib.get_num_threads() or 0 for lib in self._blas()), default=0)

    @contextlib.contextmanager
    def serial(self):
        changed = []
        for lib in self._blas():
            n = lib.get_num_threads()
            if n != 1:
                lib.set_num_threads(1)
                changed.append((lib, n))
        try:
            yield
        finally:
            for lib, n in changed:
                lib.set_num_threads(n)


_blas = _BlasThreads()


def blas_threads() -> int:
    """Threads the BLAS library runs on now (0 if threadpoolctl cannot tell). A batched run's
    bytes depend on it (see _BatchBuffers), so the workbook records it with each run."""
    return _blas.count()


class _BatchBuffers:
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
        # the weight gradients A^T B sum over all T x B rows. On one thread, OpenBLAS's float32
        # product ran at half speed here once that sum was longer than about 256 rows (3.7x the
        # time for 2x the rows at 800); cut into pieces of at most 256 rows, the three products
        # took 45% less time and training ran 15-19% faster. On two threads the whole product
        # was faster, so it is cut only on one. Either way, a run gives the same bytes for the
        # same seed and BLAS threads (OpenBLAS's own products differ in the last digits by the
        # thread count, whole or in pieces).
        self.pieces = -(-T * B // 256) if f == np.float32 and _blas.count() == 1 else 1
        self.spare = {}                             # a piece's product, by output shape


def _matmul_tn(A: np.ndarray, B: np.ndarray, out: np.ndarray, buf: _BatchBuffers) -> None:
    """out = A^T B, summed over buf.pieces runs of A's and B's rows (see _BatchBuffers)."""
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


def _forward_backward_batch(P: RNN, X: np.ndarray, Y: np.ndarray, H0: np.ndarray, buf: _BatchBuffers,
                            G: RNN, keep: np.ndarray | None = None, scale: float = 1.0) -> float:
    """Loss summed over all T x B characters of X, Y (T, B); the gradients of scale x that
    loss into G (scale 1 / B: the mean over the streams); h_t into buf.H.

    H0 (B, m) holds each stream's h_0. keep (T, B, 1) of 0.0/1.0, if given, multiplies h_{t-1}
    before step t: 0 starts that stream afresh there (a tweet's start), in the forward pass
    and, through the same product, in the backward pass. Works in the dtype of P, G and buf
    (float64 or float32); the loss is summed in float64.
    """
    T, B = X.shape
    m, K, n = P.m, P.K, T * B
    H, Hin, Pr, dH, D, tmp = buf.H, buf.Hin, buf.P, buf.dH, buf.D, buf.tmp
    total, ones = buf.total, buf.ones
    H[0] = H0
    np.add(P.U, P.b, out=buf.UbT.T)
    np.take(buf.UbT, X, axis=0, out=H[1:])      # H[t+1] = U x_t + b until step t adds W h_{t-1}
    WT = buf.WT                                 # W^T laid out for the steps' products: a
    np.copyto(WT, P.W.T)                        # transposed view cost 10% more per product here
    with _blas.serial():
        for t in range(T):
            if keep is not None:
                np.multiply(H[t], keep[t], out=Hin[t])
            np.dot(Hin[t], WT, out=tmp)
            tmp += H[t + 1]
            np.tanh(tmp, out=H[t + 1])
    Hs = H[1:].reshape(n, m)
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
    _matmul_tn(Pr, Hs, G.V, buf)
    np.matmul(ones[:n], Pr, out=G.c[:, 0])
    np.matmul(Pr, P.V, out=dH.reshape(n, m))
    dA = dH                             # dL/da_t overwrites dL/dh_t once step t has used it
    with _blas.serial():
        _backward_recurrence(dH, H[1:], P.W, D, dA, tmp, keep)
    dA2 = dA.reshape(n, m)
    _matmul_tn(dA2, Hin.reshape(n, m), G.W, buf)
    np.matmul(ones[:n], dA2, out=G.b[:, 0])
    onehot = buf.onehot                 # row i: onehot(x_i), for dU as one product
    onehot[buf.rows, buf.hot] = 0.0
    np.copyto(buf.hot, X.reshape(-1))
    onehot[buf.rows, buf.hot] = 1.0
    _matmul_tn(dA2, onehot, G.U, buf)
    return loss


def _resets(X: np.ndarray, reset_ix: int | None, dtype=np.float64) -> np.ndarray | None:
    """keep (T, B, 1): 0.0 where the input is the reset character, else 1.0; None without one."""
    if reset_ix is None:
        return None
    return (X != reset_ix).astype(dtype)[:, :, None]


# ----------------------------------------------------------------------------- tweets

EOT = "\x03"   # end of a tweet: a control character no tweet contains once load_tweets is done
_LINK = re.compile(r"https?://\S+")


def load_tweets(paths, *, keep_retweets: bool = False, keep_links: bool = False, texts=None) -> str:
    """The training text of one or more tweet-archive JSON files, each tweet ended by EOT.

    Each file is a list of objects with source, id_str, text, created_at, retweet_count,
    in_reply_to_user_id_str, favorite_count and is_retweet. HTML entities in text (&amp; ...)
    are unescaped; retweets (is_retweet, or text starting "RT @") are dropped unless
    keep_retweets; http(s) links are removed unless keep_links. Tweets left empty are dropped.
    texts: the files' contents, when they have been read already (as load_text gives them).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise RNNError("no tweet files given; pass a path or a list of paths to tweet-archive JSON files")
    out = []
    for i, path in enumerate(paths):
        p = Path(path)
        raw = load_text(p) if texts is None else texts[i]    # missing, binary, non-UTF-8: named there
        try:
            tweets = json.loads(raw)
        except json.JSONDecodeError as err:
            raise RNNError(f"{p} is not JSON: {err.msg} at line {err.lineno}, column {err.colno}; "
                           f"give a tweet-archive file (a JSON list of tweets)") from None
        except RecursionError:
            raise RNNError(f"{p} nests its JSON too deep to read; give a tweet-archive file "
                           f"(a JSON list of tweets)") from None
        if not isinstance(tweets, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str)
                                                    for t in tweets):
            raise RNNError(f"{p} is not a tweet archive: expected a JSON list of objects with a \"text\" field")
        for t in tweets:
            text = html.unescape(t["text"])
            if not keep_retweets and (t.get("is_retweet") is True or text.startswith("RT @")):
                continue
            if not keep_links:
                text = _LINK.sub("", text)
            text = re.sub(r"[ \t]{2,}", " ", _as_lf(text.replace(EOT, ""))[0]).strip()
            if text:
                out.append(text + EOT)
    if not out:
        raise RNNError(f"no tweets left in {', '.join(map(str, paths))} after dropping retweets and empty ones")
    return "".join(out)


# ----------------------------------------------------------------------------- validation

VAL_BURN_IN, VAL_STREAMS = 1000, 64   # evaluate's defaults, which the report states


def evaluate(rnn: RNN, data, *, h0=None, context=None, burn_in: int = VAL_BURN_IN, streams: int = VAL_STREAMS,
             reset_ix: int | None = None, T: int = 100) -> float:
    """Mean cross-entropy per character (nats) of predicting data[1:] from data[:-1], read as a
    continuation of what the model has read before it.

    h0 (m,) : the hidden state to start from: the one training carries (zero if None).
    context : the text before data (the training text). From h0, each reading first takes the
        burn_in characters before its first scored one, unscored: the last of context for the
        first piece. The score then starts from a state that the model reached on real text,
        as in training, where h = 0 comes only once an epoch. Without context, no burn-in.
    The text is cut into `streams` pieces read side by side for speed, each with its own
    burn-in; the pieces' score is within 0.01 of one continuous reading (tested). h0=None and
    context=None give the zero-state score: each piece from h = 0.
    tanh is computed as 1 - 2 / (exp(2a) + 1), twice as fast as np.tanh here and within
    1e-16 of it: this scores a model, it does not feed a gradient.
    """
    data = np.asarray(data, dtype=np.intp)
    n = len(data) - 1
    if n < 1:
        raise RNNError("the text to evaluate needs at least 2 characters")
    S = max(1, min(streams, n // 2 or 1))
    L = n // S                          # characters per stream; the last n - S L are not scored
    m = rnn.m
    before = np.zeros(0, np.intp) if context is None else np.asarray(context)[max(0, len(context) - burn_in):].astype(np.intp)
    b = len(before) if burn_in > 0 else 0
    full = np.concatenate([before[len(before) - b:], data])   # stream j reads full[jL : jL + b + L]
    rnn = rnn.astype(np.float64)        # a float32 model is scored in float64 too
    XU = (rnn.U + rnn.b).T.copy()       # (K, m)
    WT, VT = rnn.W.T, rnn.V.T
    starts = np.arange(S) * L
    Hs = np.empty((T, S, m))
    h = np.zeros((S, m)) if h0 is None else np.repeat(np.asarray(h0, np.float64).reshape(1, m), S, axis=0)

    def read(h, X, out):                # h_t for inputs X (S,) from h_{t-1} (S, m), into out
        if reset_ix is not None:
            h = h * (X != reset_ix)[:, None]
        np.dot(h, WT, out=out)
        out += XU[X]
        out *= 2.0
        np.exp(out, out=out)
        out += 1.0
        np.divide(2.0, out, out=out)
        np.subtract(1.0, out, out=out)
        return out

    total = 0.0
    with np.errstate(over="ignore"), _blas.serial():  # exp(2a) = inf gives tanh = 1, as it should
        pair = np.empty((2, S, m))      # the burn-in: read, do not score (two buffers in turn,
        for t in range(b):              # so that a step never writes over its input)
            h = read(h, full[starts + t], pair[t % 2])
        for s in range(0, L, T):
            t_len = min(T, L - s)
            X = full[starts[None, :] + b + s + np.arange(t_len)[:, None]]   # (t_len, S)
            Y = full[starts[None, :] + b + s + 1 + np.arange(t_len)[:, None]]
            for t in range(t_len):
                h = read(h, X[t], Hs[t])
            O = Hs[:t_len].reshape(-1, m) @ VT
            O += rnn.c[:, 0]
            O -= O.max(axis=1, keepdims=True)
            total -= float(O[np.arange(len(O)), Y.reshape(-1)].sum() - np.log(np.exp(O).sum(axis=1)).sum())
            h = h.copy()                # Hs is overwritten by the next block
    return total / (L * S)


# ----------------------------------------------------------------------------- files

def _atomic_write(path: Path, write: Callable) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove_stale_temp_files(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        hint = "free some space" if err.errno == errno.ENOSPC else "check that its folder exists and is writable"
        raise RNNError(f"cannot write {path}: {err.strerror or err} ({hint})") from None


def _remove_stale_temp_files(path: Path) -> None:
    """Delete the temporary files that writes of `path` by processes now dead left behind
    (kill -9 during a checkpoint): .<name>.<pid>.tmp whose pid no longer runs."""
    try:
        olds = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return
    for old in olds:
        pid = old.name[len(path.name) + 2:-4]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                old.unlink(missing_ok=True)
            except OSError:
                pass


def _json_array(obj) -> np.ndarray:
    """A JSON-able object as uint8 bytes: how .npz files here hold dicts without pickle."""
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8)


def _from_json_array(a: np.ndarray):
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError("a JSON member that is not bytes")
    return json.loads(a.tobytes().decode())


def _check_npz_sizes(path: Path) -> None:
    """Refuse an .npz whose members declare far more data than the file holds (a zip bomb:
    megabytes that inflate to gigabytes) or objects, from each member's .npy header, before
    any data is read. Files written here are not compressed: data and file are the same size."""
    size, declared = path.stat().st_size, 0
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in readers:
                    raise ValueError(f"unknown .npy version {version}")
                shape, _, dtype = readers[version](f)
            if dtype.hasobject:
                raise RNNError(f"{path}: {info.filename} holds Python objects; this program reads numbers only")
            declared += math.prod(shape) * dtype.itemsize
    if declared > 64 * size + (1 << 20):
        raise RNNError(f"{path}: its arrays claim {declared:,} bytes, far more than its {size:,} bytes could "
                       f"hold; it is damaged or crafted: delete it")


def save_model(path, rnn: RNN, vocab: Vocab, meta: dict | None = None, *, start=None) -> None:
    """One .npz with b, c, U, W, V, the vocabulary and a JSON dict of hyper-parameters.

    start : (h (m,), x) a hidden state the model reached in training and the character that
    came next, where sampling from it can start (History.best_h, best_x).
    """
    if vocab.K != rnn.K:
        raise RNNError(f"vocabulary has K={vocab.K} characters but the model has K={rnn.K}")
    arrays = {n: a for n, a in zip(RNN.NAMES, rnn.arrays())}
    arrays["vocab"] = np.array([ord(ch) for ch in vocab.chars], dtype=np.uint32)
    arrays["meta"] = _json_array(meta or {})
    if start is not None:
        arrays["start_h"] = np.asarray(start[0], dtype=np.float64).reshape(rnn.m)
        arrays["start_x"] = np.array(int(start[1]), dtype=np.int64)
    _atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def load_model(path) -> tuple[RNN, Vocab, dict]:
    """Read a file written by save_model (never with pickle). Returns (rnn, vocab, meta); meta
    has start_h (m,) and start_x when the file keeps a start state (files before them do not)."""
    p = Path(path)
    if not p.is_file():
        raise RNNError(f"no model file at {p}; train one first (notebooks/02_train.ipynb)")
    try:
        _check_npz_sizes(p)
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*RNN.NAMES, "vocab", "meta")}
            start = (z["start_h"], z["start_x"]) if "start_h" in z.files and "start_x" in z.files else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise RNNError(f"{p} is not a readable model file ({type(err).__name__}: {err}); "
                       f"it may be truncated: re-create it by training again") from None
    codes = np.asarray(arrays["vocab"]).astype(np.int64).reshape(-1)
    if not len(codes) or ((codes >= 0xD800) & (codes <= 0xDFFF)).any() or codes.min() < 0 or codes.max() > 0x10FFFF \
            or len(np.unique(codes)) != len(codes):
        raise RNNError(f"{p}: its vocabulary holds codes that are not distinct characters; the file is damaged")
    vocab = Vocab("".join(map(chr, codes.tolist())))
    rnn = RNN(*(arrays[n].astype(np.float64) for n in RNN.NAMES))
    K, m = vocab.K, rnn.m
    for name, shape in RNN.shapes(K, m).items():
        if getattr(rnn, name).shape != shape:
            raise RNNError(f"{p}: {name} has shape {getattr(rnn, name).shape}, expected {shape} "
                           f"for K={K}, m={m}; the file is damaged or from another program")
    if not all(np.isfinite(a).all() for a in rnn.arrays()):
        raise RNNError(f"{p}: the model has NaN or infinite weights; it cannot write text: train again "
                       f"(with a lower eta if the loss exploded)")
    try:
        meta = _from_json_array(arrays["meta"])
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RNNError(f"{p}: its metadata is not valid JSON; the file is damaged") from None
    if start is not None:
        h, x = np.asarray(start[0], dtype=np.float64), start[1]
        if h.shape != (m,) or not np.isfinite(h).all() or x.shape != () or not 0 <= int(x) < K:
            raise RNNError(f"{p}: its start state does not fit K={K}, m={m}; the file is damaged")
        meta = {**meta, "start_h": h, "start_x": int(x)}
    return rnn, vocab, meta


def _state_dict(st) -> dict:
    """Every saved field of a TrainState by name (the optimiser's as opt.M, ...): arrays, or
    values for JSON. What _write_checkpoint writes."""
    out = {}
    for name, f, _, value in _state_fields(st):
        if f.metadata.get("per_update"):
            value = value[:st.k]
        elif f.metadata.get("ragged"):
            out[name + "_lengths"] = np.array([len(a) for a in value], dtype=np.int64)
            value = np.concatenate(value).astype(np.int64) if value else np.zeros(0, np.int64)
        elif isinstance(value, np.random.Generator):
            value = value.bit_generator.state
        out[name] = value
    return out

def _load_state_dict(st, saved: dict, where) -> None:
    """Every saved field of TrainState st from `saved` (as _state_dict makes it), checked
    against st's own: arrays keep their shape and dtype, numbers their type."""
    def damaged(what):
        return RNNError(f"{where}: {what}; the file is damaged or from another version: "
                        f"start the run again without resume")
    for name, f, owner, value in _state_fields(st):
        if name not in saved:
            raise damaged(f"it has no {name}")
        new = saved[name]
        if isinstance(value, np.ndarray):
            new = np.asarray(new)
            want = (saved.get("k"),) if f.metadata.get("per_update") else value.shape
            if new.shape != want or new.dtype != value.dtype:
                raise damaged(f"{name} is {new.dtype} of shape {new.shape}, expected {value.dtype} of "
                              f"shape {want}")
            value[:len(new)] = new          # in place: P's arrays are views of theta
        elif isinstance(value, np.random.Generator):
            try:
                value.bit_generator.state = new
            except (TypeError, ValueError, KeyError) as err:
                raise damaged(f"its generator state is not usable ({err})") from None
        elif f.metadata.get("ragged"):
            lengths = np.asarray(saved.get(name + "_lengths", []), dtype=np.int64)
            flat = np.asarray(new, dtype=np.intp)
            if (lengths < 0).any() or lengths.sum() != len(flat):
                raise damaged(f"the lengths of {name} do not add up")
            setattr(owner, f.name, np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else [])
        else:
            kind = type(value)
            if isinstance(new, np.ndarray) and kind is list:     # format 1 kept these as arrays
                new = new.tolist()
            ok = (isinstance(new, (int, float)) and not isinstance(new, bool)) if kind is float \
                else isinstance(new, kind) and not isinstance(new, bool)
            if not ok:
                raise damaged(f"{name} is {new!r}, expected a {kind.__name__}")
            setattr(owner, f.name, kind(new))


def _state_fields(obj, prefix: str = ""):
    """(name, field, owner, value) of each saved field of a state, nested objects flattened."""
    for f in fields(obj):
        if f.metadata.get("state", True):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                yield from _state_fields(value, f"{prefix}{f.name}.")
            else:
                yield prefix + f.name, f, obj, value


CHECKPOINT_FORMAT = 2   # 1: before TrainState (read and upgraded); 2: TrainState.state_dict


def _write_checkpoint(path: Path, config: dict, state: dict) -> None:
    """One .npz: each array of the state (TrainState.state_dict) as a member; its other
    values, and the run's config, as JSON bytes."""
    arrays = {name: v for name, v in state.items() if isinstance(v, np.ndarray)}
    values = {name: v for name, v in state.items() if not isinstance(v, np.ndarray)}
    out = {**arrays, "config": _json_array({**config, "format": CHECKPOINT_FORMAT}), "state": _json_array(values)}
    _atomic_write(path, lambda f: np.savez(f, **out))


def _upgrade_format_1(saved: dict) -> dict:
    """A checkpoint written before TrainState, in today's names: it resumes as it was."""
    saved = dict(saved)
    for name in ("M", "S", "t"):
        saved["opt." + name] = saved.pop(name, None)
    saved["sample_text_lengths"] = saved.pop("sample_length", None)
    saved.setdefault("seconds", 0.0)      # format 1 kept neither the time nor the best model's state
    saved.setdefault("best_h", np.zeros_like(saved["hprev"][0]) if "hprev" in saved else None)
    saved.setdefault("best_x", 0)
    return saved


def checkpoint_updates(path) -> int:
    """The update count a checkpoint holds (read from its JSON member only, no arrays)."""
    path = Path(path)
    _check_npz_sizes(path)
    with np.load(path, allow_pickle=False) as z:
        k = _from_json_array(z["state"])["k"]
    if not isinstance(k, int) or k < 0:
        raise RNNError(f"{path}: its update count is {k!r}; the file is damaged")
    return k


def _read_checkpoint(path: Path, config: dict, n_updates: int) -> dict:
    """The state saved by _write_checkpoint (for TrainState.load_state_dict), after checking
    that it belongs to this run."""
    if not path.is_file():
        raise RNNError(f"no checkpoint at {path} to resume from; start the run without resume "
                       f"(it writes one every checkpoint_every updates)")
    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            saved = {k: z[k] for k in z.files if k not in ("config", "state")}
            old, values = _from_json_array(z["config"]), _from_json_array(z["state"])
        if not isinstance(old, dict) or not isinstance(values, dict) or not isinstance(old.get("info", {}), dict) \
                or not {"K", "data"} <= set(old):
            raise ValueError("its config or state is not what rnn_core writes")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, UnicodeDecodeError, RecursionError) as err:
        raise RNNError(f"{path} is not a readable checkpoint ({type(err).__name__}); it may be truncated "
                       f"or damaged: delete it and start the run again") from None
    saved.update(values)
    version = old.pop("format", 1)
    if version == 1:
        saved = _upgrade_format_1(saved)
    elif version != CHECKPOINT_FORMAT:
        raise RNNError(f"{path} was written by another version of rnn_core (checkpoint format {version}, "
                       f"this one reads {CHECKPOINT_FORMAT}); resume it with that version, or start again")
    if old.get("info", {}).get("vocab", None) != config["info"].get("vocab", None) or old["K"] != config["K"]:
        raise RNNError(f"{path} was written for another vocabulary (K={old['K']}, this text has "
                       f"K={config['K']}); resume with the same data_path, or use a new run_dir")
    if old["data"] != config["data"]:
        raise RNNError(f"{path} was written for another text ({old['data'].split(':')[0]} characters "
                       f"of training text, now {config['data'].split(':')[0]} or different ones); "
                       f"resume with the same data_path and val_fraction, or use a new run_dir")
    flat = {**{k: v for k, v in config.items() if k != "info"}, **config["info"]}
    flat_old = {"dtype": "float64", **{k: v for k, v in old.items() if k != "info"}, **old.get("info", {})}
    diff = [f"{k}={flat_old.get(k)!r} there, {v!r} now" for k, v in flat.items() if flat_old.get(k) != v]
    if diff:
        raise RNNError(f"{path} belongs to a run with other settings ({'; '.join(diff)}); resume "
                       f"with the same settings (only n_updates may change), or use a new run_dir")
    k = saved.get("k")
    if not isinstance(k, int) or k < 0:
        raise RNNError(f"{path}: its update count is {k!r}; the file is damaged: start the run again")
    if k > n_updates:
        raise RNNError(f"{path} is at update {k:,}, beyond n_updates = {n_updates:,}; "
                       f"set n_updates >= {k} to continue it")
    return saved
