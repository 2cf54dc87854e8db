"""Training beyond the assignment's loop (mini-batches, shuffled and random chunks, validation,
checkpoints and resume, Ctrl-C), through rnn_core.train's collaborators: B streams side by side,
shuffled chunks or random positions, tweets' resets, float32 (RunReader); held-out scores, the
best model by them, checkpoints that resume bit for bit, and Ctrl-C (RunWatch); the state they
add (RunState). train() here takes every setting and calls rnn_core.train.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

import rnn_core as rc
from workbook import files, lstm, nets
from workbook.batched import BLAS, BatchBuffers, forward_backward_batch, resets
from workbook.artefacts import STOP_FILE

VAL_BURN_IN, VAL_STREAMS = 1000, 64   # evaluate's defaults, which the report states


@dataclass
class RunHistory(rc.History):
    """rc.History, and the held-out scores: val_update, val_loss (the updates after which the
    held-out text was scored, and its loss in nats per character there) and best_val_loss."""
    val_update: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_val_loss: float = math.nan


@dataclass
class RunState(rc.TrainState):
    """rc.TrainState, and what the workbook's training adds: the shuffled order and the held-out
    scores. A checkpoint writes it whole (state_dict) and a resume reads it whole: a field added
    here is saved and restored with no other line changing."""
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # this epoch's chunks, in order
    pos: int = 0                 # shuffled chunks: how many of `order` are done
    val_update: list = field(default_factory=list)   # validation: the updates scored after,
    val_loss: list = field(default_factory=list)     # and the held-out loss per character there
    best_val_loss: float = math.nan

    NOT_SAVED: ClassVar = ("P",)                         # views of theta, rebuilt
    NESTED: ClassVar = {"opt": ("M", "S", "t")}           # the optimiser's state (its settings are the run's)
    PER_UPDATE: ClassVar = ("loss", "smooth_loss", "epoch")   # (n_updates,): the first k entries are the run
    RAGGED: ClassVar = ("sample_text",)                  # int arrays of different lengths

    def state_dict(self) -> dict:
        return files.state_dict(self)

    def load_state_dict(self, saved: dict, where) -> None:
        files.load_state_dict(self, saved, where)

    def history(self) -> RunHistory:
        h = super().history()
        return RunHistory(**{f.name: getattr(h, f.name) for f in fields(h)},
                          val_update=np.array(self.val_update, dtype=np.int64),
                          val_loss=np.array(self.val_loss, dtype=np.float64), best_val_loss=self.best_val_loss)


class RunReader(rc.Reader):
    """The text read as rc.Reader reads it, or by B streams side by side from B evenly spaced
    positions, or in shuffled or random chunks, with resets after a tweet's end, in float64 or
    float32; and the pass that learns from it (rnn_core's for one stream, else the batched one)."""

    def __init__(self, data: np.ndarray, K: int, m: int, *, T: int, B: int, order: str, reset_ix,
                 loss_reduction: str, dtype, cell: str = "rnn"):
        super().__init__(data, K, m, T=T, loss_reduction=loss_reduction, dtype=dtype)
        N = len(data)
        self.B, self.order, self.reset_ix, self.dtype = B, order, reset_ix, dtype
        self.L = (N - 1) // B                 # characters each stream reads (sequential order)
        self.starts = np.arange(B) * self.L
        self.n_chunks = (N - 1) // T          # chunk starts (shuffled order)
        self.lstm = cell == "lstm"            # the LSTM's pass takes any number of streams, 1 too
        self.batched = B > 1 or reset_ix is not None or order != "sequential" or self.lstm
        if self.lstm:
            self.buf = lstm.LSTMBuffers(K, m, T, B, reset_ix is not None, dtype)
            self.G, self.grad = lstm.LSTM.packed(K, m, dtype)
        elif self.batched:
            self.buf = BatchBuffers(K, m, T, B, reset_ix is not None, dtype)
        self.steps_and_one = np.arange(T + 1)[:, None]
        self.scale /= B

    @property
    def n_order(self) -> int:
        """The length of RunState.order: the chunks of one shuffled epoch (none in sequence)."""
        return self.n_chunks if self.order == "shuffled" else 0

    def start(self, st: RunState) -> None:
        """A fresh run: the first epoch's order of chunks, when they are shuffled."""
        if self.order == "shuffled":
            st.order = st.rng.permutation(self.n_chunks)

    def next_chunk(self, st: RunState) -> np.ndarray:
        if self.order == "sequential":
            return super().next_chunk(st)
        st.hprev[:] = 0.0                     # each shuffled or random chunk from h = 0
        if self.order == "random":            # any start s with s + T + 1 <= N, uniformly
            st.current_epoch = st.k * self.B * self.T // (len(self.data) - 1)
            return st.rng.integers(0, len(self.data) - self.T, size=self.B)
        if st.pos + self.B > self.n_chunks:
            st.order, st.pos, st.current_epoch = st.rng.permutation(self.n_chunks), 0, st.current_epoch + 1
        return st.order[st.pos:st.pos + self.B] * self.T

    def learn(self, st: RunState, starts: np.ndarray) -> float:
        if not self.batched:
            return super().learn(st, starts)
        XY = self.data[starts[None, :] + self.steps_and_one].astype(np.intp, copy=False)   # (T + 1, B):
        X, Y = XY[:-1], XY[1:]                                     # X is rows 0..T-1, Y rows 1..T
        keep = resets(X, self.reset_ix, self.dtype)
        if self.lstm:
            loss = lstm.forward_backward(st.P, X, Y, st.hprev, self.buf, self.G, keep, self.scale) * self.scale
            st.hprev[...] = lstm.last_state(self.buf)
            return loss
        loss = forward_backward_batch(st.P, X, Y, st.hprev, self.buf, self.G, keep, self.scale) * self.scale
        st.hprev[...] = self.buf.H[self.T]
        return loss

    def advance(self, st: RunState) -> None:
        if self.order == "sequential":
            st.e += self.T
        elif self.order == "shuffled":
            st.pos += self.B

    def check_resumed(self, st: RunState, K: int, where) -> None:
        """A state read from a checkpoint fits this text and model: every position inside the
        text, every count in range, every number finite (a damaged file would otherwise resume
        into a silently different run)."""
        def bad(what):
            raise rc.RNNError(f"{where}: {what}; the file is damaged: delete it and start the run again")
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


class StopFlag:
    """While active, Ctrl-C (SIGINT), SIGTERM and SIGHUP set .hit instead of stopping the
    process, and so does the file that the environment's DD2424_STOP_RUN names, when it appears
    (how make's planner asks a kernel to stop: it holds the signal's name). The loop stops
    between updates and keeps the run so far.

    A second signal raises KeyboardInterrupt. Only the main thread can take signals; elsewhere
    they are left as they are.
    """
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.hit, self.old, self.file = False, {}, os.environ.get(STOP_FILE)

    def asked(self, k: int) -> str | bool:
        """The reason to stop before update k + 1, if any: a signal, or the file (looked for
        every 100 updates)."""
        if not self.hit and self.file and k % 100 == 0 and os.path.exists(self.file):
            try:
                self.hit = Path(self.file).read_text(encoding="utf-8").strip() or "the planner"
            except OSError:
                self.hit = "the planner"
        return self.hit

    def handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self.old.items():
            signal.signal(s, old)


class RunWatch(rc.Watch):
    """rc.Watch, and: the held-out text scored every val_every updates and at the end (the best
    model by it with best_by="val"), the whole state checkpointed every checkpoint_every updates,
    at the end and when stopped by a signal (the time it cost included)."""

    def __init__(self, *, n_updates, sample_every, sample_length, progress, train_data, val_data, val_every,
                 best_by, reset_ix, checkpoint, checkpoint_every, config, stop: StopFlag):
        super().__init__(sample_every=sample_every, sample_length=sample_length, progress=progress)
        self.n_updates, self.val_data, self.val_every, self.best_by = n_updates, val_data, val_every, best_by
        self.reset_ix, self.checkpoint, self.checkpoint_every = reset_ix, checkpoint, checkpoint_every
        self.train_data, self.config, self.stop = train_data, config, stop

    def begin(self, st: RunState) -> None:
        super().begin(st)
        self.saved_at = st.k if st.k else None     # a resumed run's file holds update k0; a new run's none yet
        if st.val_update and st.val_update[-1] % self.val_every:   # the last session's closing
            del st.val_update[-1], st.val_loss[-1]   # score: a run never stopped has none there

    def carry_on(self, st: RunState) -> bool:
        by = self.stop.asked(st.k)
        if by and st.k < self.n_updates:
            self.save(st)
            self.stopped = "interrupted"
            self.message = (f"training stopped by {by} after {st.k:,} of {self.n_updates:,} updates; "
                            f"the run so far is kept, and resume=True continues it")
            return False
        if st.k > self.k0 and (st.k % self.checkpoint_every == 0 or st.k == self.n_updates):
            self.save(st)
        return True

    def sample(self, st: RunState, x0: int) -> None:
        """rc.Watch.sample, by the cell's own sampler."""
        if st.k % self.sample_every == 0 and self.sample_length:
            st.sample_update.append(st.k)
            st.sample_text.append(nets.of(st.P).synthesize(st.P, st.hprev[0], x0, self.sample_length, rng=st.rng))

    def save(self, st: RunState) -> None:
        """The state before update k + 1, which a resume starts from."""
        st.seconds = self.seconds0 + time.perf_counter() - self.clock
        if self.checkpoint is not None:
            files.write_checkpoint(Path(self.checkpoint), self.config, st.state_dict())
            self.saved_at = st.k

    def keep_best(self, st: RunState, next_x: int) -> None:
        """The best model by smooth loss (best_by "smooth"), or by the held-out score, taken every
        val_every updates and at the end, read on from the state training carries."""
        k = st.k
        if self.best_by == "smooth":
            super().keep_best(st, next_x)
        if self.val_data is not None and (k % self.val_every == 0 or k == self.n_updates):
            v = evaluate(st.P, self.val_data, h0=st.hprev[0], context=self.train_data, reset_ix=self.reset_ix)
            st.val_update.append(k)
            st.val_loss.append(v)
            if self.best_by == "val" and k % self.val_every == 0 and not v >= st.best_val_loss:  # also the first (nan)
                st.best_val_loss = v
                st.keep_best(float(st.smooth_loss[k - 1]), next_x)

    def diverged(self, st: RunState, what: str) -> None:
        """What happened, and only what exists: the checkpoint if one was written."""
        if self.checkpoint is not None:
            what += (f"; the checkpoint keeps update {self.saved_at:,}" if self.saved_at is not None
                     else "; no checkpoint was written before it")
        super().diverged(st, what)


def indices(data) -> np.ndarray:
    """An encoded text as an integer array, without a copy when it is one already (a compact
    one stays compact: a 200 MB book is not made 1.6 GB)."""
    a = np.asarray(data)
    if a.dtype.kind not in "iu":
        a = np.asarray(data, dtype=np.intp)
    return a.reshape(-1)


def fingerprint(data: np.ndarray) -> str:
    """The text's length and the CRC-32 of its indices as int64 (a block at a time: no copy of it all)."""
    crc, block = 0, 1 << 20
    for start in range(0, len(data), block):
        crc = zlib.crc32(np.ascontiguousarray(data[start:start + block], dtype=np.int64).tobytes(), crc)
    return f"{len(data)}:{crc:08x}"


def check_reading(N: int, T: int, B: int, order: str) -> None:
    """A training text of N characters can be read in chunks of T characters by B streams side by
    side (sequential order) or B shuffled chunks at a time; else a one-line RNNError with the fix."""
    if N < T + 1:
        raise rc.RNNError(f"the text has {N} characters, fewer than seq_length + 1 = {T + 1}; "
                          f"use a longer text or a smaller seq_length")
    if order == "sequential" and (N - 1) // B < T:
        raise rc.RNNError(f"batch_size {B} leaves {(N - 1) // B} characters per stream, fewer than seq_length = {T}; "
                          f"use a smaller batch_size (at most {(N - 1) // T})")
    if order != "sequential" and (N - 1) // T < B:
        raise rc.RNNError(f"the text has {(N - 1) // T} chunks of seq_length = {T}, fewer than batch_size = {B}")


def train(rnn: rc.RNN, data, *, n_updates: int, rng: np.random.Generator, seq_length: int = 25,
          eta: float = 0.1, optimizer: str = "adagrad", clip: float = 5.0, loss_reduction: str = "sum",
          sample_every: int = 10_000, sample_length: int = 200, progress=None,
          batch_size: int = 1, chunk_order: str = "sequential", reset_ix: int | None = None,
          val_data=None, val_every: int = 5000, best_by: str = "smooth",
          checkpoint=None, checkpoint_every: int = 10_000, resume: bool = False,
          info: dict | None = None, dtype: str = "float64") -> RunHistory:
    """rc.train with everything the workbook adds; with its defaults, the same run to the bit.

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
        Ctrl-C, SIGTERM or SIGHUP, the whole RunState is written there atomically. resume=True
        continues from it up to n_updates, giving the same history, bit for bit, as a run never
        stopped. info (JSON-able, e.g. the vocabulary) is stored with it and must match on resume.
    dtype "float32": parameters, gradients, optimiser state and the forward and backward
        passes in float32 (losses are still summed in float64). About twice as fast with
        mini-batches; digits beyond float32's 7 differ from a float64 run. Samples, validation
        scores and the returned models are computed and stored in float64.
    Ctrl-C stops between two updates: the history so far is returned with stopped="interrupted".
    """
    f = np.dtype(dtype)
    data = indices(data)
    val_data = None if val_data is None else indices(val_data)
    K, m = rnn.K, rnn.m
    cell = nets.of(rnn).name
    reader = RunReader(data, K, m, T=seq_length, B=batch_size, order=chunk_order, reset_ix=reset_ix,
                       loss_reduction=loss_reduction, dtype=f, cell=cell)
    # what a checkpoint must agree with to be resumed (n_updates may grow)
    config = {"cell": cell, "K": K, "m": m, "seq_length": seq_length, "eta": eta, "optimizer": optimizer, "clip": clip,
              "loss_reduction": loss_reduction, "sample_every": sample_every, "sample_length": sample_length,
              "batch_size": batch_size, "chunk_order": chunk_order,
              "reset_ix": None if reset_ix is None else int(reset_ix), "val_every": val_every, "best_by": best_by,
              "data": fingerprint(data), "val_data": None if val_data is None else fingerprint(val_data),
              "dtype": dtype, "info": info or {}}
    st = RunState.new(rnn, n_updates=n_updates, optimizer=optimizer, eta=eta, rng=rng, batch_size=batch_size,
                      dtype=f)
    if cell == "lstm":                  # each stream carries [h; C]
        st.hprev, st.best_h = np.zeros((batch_size, 2 * m), f), np.zeros(2 * m, f)
    st.order = np.zeros(reader.n_order, np.int64)
    if resume:
        st.load_state_dict(files.read_checkpoint(Path(checkpoint), config, n_updates), checkpoint)
        reader.check_resumed(st, K, checkpoint)
    else:
        reader.start(st)
    with StopFlag() as stop:
        watch = RunWatch(n_updates=n_updates, sample_every=sample_every, sample_length=sample_length,
                         progress=progress, train_data=data, val_data=val_data, val_every=val_every, best_by=best_by,
                         reset_ix=reset_ix, checkpoint=checkpoint, checkpoint_every=checkpoint_every, config=config,
                         stop=stop)
        return rc.train(rnn, data, n_updates=n_updates, rng=rng, eta=eta, clip=clip, state=st, reader=reader,
                        watch=watch)


# ----------------------------------------------------------------------------- the held-out text

def evaluate(rnn: rc.RNN, data, *, h0=None, context=None, burn_in: int = VAL_BURN_IN, streams: int = VAL_STREAMS,
             reset_ix: int | None = None, T: int = 100) -> float:
    """Mean cross-entropy per character (nats) of predicting data[1:] from data[:-1], read as a
    continuation of what the model has read before it.

    h0 (m,) : the hidden state to start from: the one training carries (zero if None); for an
        LSTM, its state [h; C] (2m,).
    context : the text before data (the training text). From h0, each reading first takes the
        burn_in characters before its first scored one, unscored: the last of context for the
        first piece. The score then starts from a state that the model reached on real text,
        as in training, where h = 0 comes only once an epoch. Without context, no burn-in.
    The text is cut into `streams` pieces read side by side for speed, each with its own
    burn-in; the pieces' score is within 0.01 of one continuous reading (tested). h0=None and
    context=None give the zero-state score: each piece from h = 0.
    The RNN's tanh is computed as 1 - 2 / (exp(2a) + 1), within 1e-16 of np.tanh (this scores a
    model, it feeds no gradient); which of the two is faster depends on the CPU's numpy build.
    """
    data = np.asarray(data, dtype=np.intp)
    n = len(data) - 1
    S = max(1, min(streams, n // 2 or 1))
    L = n // S                          # characters per stream; the last n - S L are not scored
    m = rnn.m
    before = np.zeros(0, np.intp) if context is None else np.asarray(context)[max(0, len(context) - burn_in):].astype(np.intp)
    b = len(before) if burn_in > 0 else 0
    full = np.concatenate([before[len(before) - b:], data])   # stream j reads full[jL : jL + b + L]
    rnn = rnn.astype(np.float64)        # a float32 model is scored in float64 too
    width = lstm.state_size(rnn)        # the state each piece carries: h, or the LSTM's [h; C]
    XU = (rnn.U + rnn.b).T.copy()       # (K, m)
    WT, VT = rnn.W.T, rnn.V.T
    starts = np.arange(S) * L
    Hs = np.empty((T, S, width))
    h = np.zeros((S, width)) if h0 is None else np.repeat(np.asarray(h0, np.float64).reshape(1, width), S, axis=0)

    def read(h, X, out):                # the state after inputs X (S,) from the state h (S, width), into out
        if reset_ix is not None:
            h = h * (X != reset_ix)[:, None]
        if width != m:
            return lstm.step(rnn, h, X, out)
        np.dot(h, WT, out=out)
        out += XU[X]
        out *= 2.0
        np.exp(out, out=out)
        out += 1.0
        np.divide(2.0, out, out=out)
        np.subtract(1.0, out, out=out)
        return out

    total = 0.0
    with np.errstate(over="ignore"), BLAS.serial():  # exp(2a) = inf gives tanh = 1, as it should
        pair = np.empty((2, S, width))  # the burn-in: read, do not score (two buffers in turn,
        for t in range(b):              # so that a step never writes over its input)
            h = read(h, full[starts + t], pair[t % 2])
        for s in range(0, L, T):
            t_len = min(T, L - s)
            X = full[starts[None, :] + b + s + np.arange(t_len)[:, None]]   # (t_len, S)
            Y = full[starts[None, :] + b + s + 1 + np.arange(t_len)[:, None]]
            for t in range(t_len):
                h = read(h, X[t], Hs[t])
            O = Hs[:t_len, :, :m].reshape(-1, m) @ VT   # h: the state's first m numbers
            O += rnn.c[:, 0]
            O -= O.max(axis=1, keepdims=True)
            total -= float(O[np.arange(len(O)), Y.reshape(-1)].sum() - np.log(np.exp(O).sum(axis=1)).sum())
            h = h.copy()                # Hs is overwritten by the next block
    return total / (L * S)
