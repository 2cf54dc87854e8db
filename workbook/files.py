"""Model and checkpoint files, written atomically and read without pickle: .npz files, each
checked before its data is trusted (sizes that the file cannot hold, shapes, types, non-finite
numbers), each problem in one line.
"""
from __future__ import annotations

import errno
import json
import math
import os
import zipfile
from dataclasses import fields
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable

import numpy as np

import rnn_core as rc
from workbook import lstm

CHECKPOINT_FORMAT = 2   # the checkpoint layout: each state field a member (see state_dict)


# ----------------------------------------------------------------------------- writing

def atomic_write(path, write: Callable) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_stale_temp_files(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        hint = "free some space" if err.errno == errno.ENOSPC else "check that its folder exists and is writable"
        raise rc.RNNError(f"cannot write {path}: {err.strerror or err} ({hint})") from None


def remove_stale_temp_files(path: Path) -> None:
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


def json_array(obj) -> np.ndarray:
    """A JSON-able object as uint8 bytes: how .npz files here hold dicts without pickle."""
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8)


def from_json_array(a: np.ndarray):
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError("a JSON member that is not bytes")
    return json.loads(a.tobytes().decode())


def check_npz_sizes(path: Path) -> None:
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
                raise rc.RNNError(f"{path}: {info.filename} holds Python objects; this program reads numbers only")
            declared += math.prod(shape) * dtype.itemsize
    if declared > 64 * size + (1 << 20):
        raise rc.RNNError(f"{path}: its arrays claim {declared:,} bytes, far more than its {size:,} bytes could "
                          f"hold; it is damaged or crafted: delete it")


# ----------------------------------------------------------------------------- model files

def save_model(path, rnn: rc.RNN, vocab: rc.Vocab, meta: dict | None = None, *, start=None) -> None:
    """One .npz with b, c, U, W, V (an RNN's or an LSTM's: their shapes tell), the vocabulary and
    a JSON dict of hyper-parameters.

    start : (h (m,) or an LSTM's [h; C] (2m,), x) a state the model reached in training and the character that
    came next, where sampling from it can start (History.best_h, best_x).
    """
    if vocab.K != rnn.K:
        raise rc.RNNError(f"vocabulary has K={vocab.K} characters but the model has K={rnn.K}")
    arrays = {n: a for n, a in zip(rc.RNN.NAMES, rnn.arrays())}
    arrays["vocab"] = np.array([ord(ch) for ch in vocab.chars], dtype=np.uint32)
    arrays["meta"] = json_array(meta or {})
    if start is not None:
        arrays["start_h"] = np.asarray(start[0], dtype=np.float64).reshape(lstm.state_size(rnn))
        arrays["start_x"] = np.array(int(start[1]), dtype=np.int64)
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def load_model(path) -> tuple[rc.RNN, rc.Vocab, dict]:
    """Read a file written by save_model (never with pickle). Returns (rnn, vocab, meta); meta
    has start_h (m,) and start_x when the file keeps a start state."""
    p = Path(path)
    if not p.is_file():
        raise rc.RNNError(f"no model file at {p}; train one first (notebooks/02_train.ipynb)")
    try:
        check_npz_sizes(p)
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*rc.RNN.NAMES, "vocab", "meta")}
            start = (z["start_h"], z["start_x"]) if "start_h" in z.files and "start_x" in z.files else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise rc.RNNError(f"{p} is not a readable model file ({type(err).__name__}: {err}); "
                          f"it may be truncated: re-create it by training again") from None
    codes = np.asarray(arrays["vocab"]).astype(np.int64).reshape(-1)
    if not len(codes) or ((codes >= 0xD800) & (codes <= 0xDFFF)).any() or codes.min() < 0 or codes.max() > 0x10FFFF \
            or len(np.unique(codes)) != len(codes):
        raise rc.RNNError(f"{p}: its vocabulary holds codes that are not distinct characters; the file is damaged")
    vocab = rc.Vocab("".join(map(chr, codes.tolist())))
    b, V = arrays["b"], arrays["V"]
    kind = lstm.LSTM if b.ndim == 2 and V.ndim == 2 and b.shape[0] == 4 * V.shape[1] else rc.RNN   # 4m gate rows
    rnn = kind(*(arrays[n].astype(np.float64) for n in rc.RNN.NAMES))
    K, m = vocab.K, rnn.m
    for name, shape in kind.shapes(K, m).items():
        if getattr(rnn, name).shape != shape:
            raise rc.RNNError(f"{p}: {name} has shape {getattr(rnn, name).shape}, expected {shape} "
                              f"for K={K}, m={m}; the file is damaged or from another program")
    if not all(np.isfinite(a).all() for a in rnn.arrays()):
        raise rc.RNNError(f"{p}: the model has NaN or infinite weights; it cannot write text: train again "
                          f"(with a lower eta if the loss exploded)")
    try:
        meta = from_json_array(arrays["meta"])
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise rc.RNNError(f"{p}: its metadata is not valid JSON; the file is damaged") from None
    if start is not None:
        h, x = np.asarray(start[0], dtype=np.float64), start[1]
        if h.shape != (lstm.state_size(rnn),) or not np.isfinite(h).all() or x.shape != () or not 0 <= int(x) < K:
            raise rc.RNNError(f"{p}: its start state does not fit K={K}, m={m}; the file is damaged")
        meta = {**meta, "start_h": h, "start_x": int(x)}
    return rnn, vocab, meta


# ----------------------------------------------------------------------------- training states

def state_fields(st):
    """(name, owner, attribute, value) of each field of a training state that a checkpoint holds:
    every field but those in st.NOT_SAVED, and of the objects in st.NESTED only the fields it
    names there (the optimiser's M, S and t as opt.M, opt.S, opt.t)."""
    for f in fields(st):
        if f.name in st.NOT_SAVED:
            continue
        value = getattr(st, f.name)
        if f.name in st.NESTED:
            for attr in st.NESTED[f.name]:
                yield f"{f.name}.{attr}", value, attr, getattr(value, attr)
        else:
            yield f.name, st, f.name, value


def state_dict(st) -> dict:
    """Every saved field of a training state by name, as arrays or values for JSON: arrays with
    an entry per update (st.PER_UPDATE) cut to the k done, lists of arrays of different
    lengths (st.RAGGED) as one array and their lengths, the generator as its state."""
    out = {}
    for name, _, _, value in state_fields(st):
        if name in st.PER_UPDATE:
            value = value[:st.k]
        elif name in st.RAGGED:
            out[name + "_lengths"] = np.array([len(a) for a in value], dtype=np.int64)
            value = np.concatenate(value).astype(np.int64) if value else np.zeros(0, np.int64)
        elif isinstance(value, np.random.Generator):
            value = value.bit_generator.state
        out[name] = value
    return out


def load_state_dict(st, saved: dict, where) -> None:
    """Every saved field of st from `saved` (as state_dict makes it), checked against st's own:
    arrays keep their shape and dtype, numbers and lists their type; where names the source."""
    def damaged(what):
        return rc.RNNError(f"{where}: {what}; the file is damaged or from another version: "
                           f"start the run again without resume")
    for name, owner, attr, value in state_fields(st):
        if name not in saved:
            raise damaged(f"it has no {name}")
        new = saved[name]
        if name in st.RAGGED:
            lengths = np.asarray(saved.get(name + "_lengths", []), dtype=np.int64)
            flat = np.asarray(new, dtype=np.intp)
            if (lengths < 0).any() or lengths.sum() != len(flat):
                raise damaged(f"the lengths of {name} do not add up")
            setattr(owner, attr, np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else [])
        elif isinstance(value, np.ndarray):
            new = np.asarray(new)
            want = (saved.get("k"),) if name in st.PER_UPDATE else value.shape
            if new.shape != want or new.dtype != value.dtype:
                raise damaged(f"{name} is {new.dtype} of shape {new.shape}, expected {value.dtype} of "
                              f"shape {want}")
            value[:len(new)] = new          # in place: P's arrays are views of theta
        elif isinstance(value, np.random.Generator):
            try:
                value.bit_generator.state = new
            except (TypeError, ValueError, KeyError) as err:
                raise damaged(f"its generator state is not usable ({err})") from None
        else:
            kind = type(value)
            ok = (isinstance(new, (int, float)) and not isinstance(new, bool)) if kind is float \
                else isinstance(new, kind) and not isinstance(new, bool)
            if not ok:
                raise damaged(f"{name} is {new!r}, expected a {kind.__name__}")
            setattr(owner, attr, kind(new))


# ----------------------------------------------------------------------------- checkpoints

def write_checkpoint(path: Path, config: dict, state: dict) -> None:
    """One .npz: each array of the state (state_dict) as a member; its other values, and the
    run's config, as JSON bytes."""
    arrays = {name: v for name, v in state.items() if isinstance(v, np.ndarray)}
    values = {name: v for name, v in state.items() if not isinstance(v, np.ndarray)}
    out = {**arrays, "config": json_array({**config, "format": CHECKPOINT_FORMAT}), "state": json_array(values)}
    atomic_write(path, lambda f: np.savez(f, **out))


def checkpoint_updates(path) -> int:
    """The update count a checkpoint holds (read from its JSON member only, no arrays)."""
    path = Path(path)
    check_npz_sizes(path)
    with np.load(path, allow_pickle=False) as z:
        k = from_json_array(z["state"])["k"]
    if not isinstance(k, int) or k < 0:
        raise rc.RNNError(f"{path}: its update count is {k!r}; the file is damaged")
    return k


def read_checkpoint(path: Path, config: dict, n_updates: int) -> dict:
    """The state saved by write_checkpoint (for load_state_dict), after checking that it belongs
    to this run: the same text, vocabulary and settings (only n_updates may grow)."""
    if not path.is_file():
        raise rc.RNNError(f"no checkpoint at {path} to resume from; start the run without resume "
                          f"(it writes one every checkpoint_every updates)")
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            saved = {k: z[k] for k in z.files if k not in ("config", "state")}
            old, values = from_json_array(z["config"]), from_json_array(z["state"])
        if not isinstance(old, dict) or not isinstance(values, dict) or not isinstance(old.get("info", {}), dict) \
                or not {"K", "data"} <= set(old):
            raise ValueError("its config or state is not what the workbook writes")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, UnicodeDecodeError, RecursionError) as err:
        raise rc.RNNError(f"{path} is not a readable checkpoint ({type(err).__name__}); it may be truncated "
                          f"or damaged: delete it and start the run again") from None
    saved.update(values)
    version = old.pop("format", 1)          # the first format had no number
    if version != CHECKPOINT_FORMAT:
        raise rc.RNNError(f"{path} was written by another version of the workbook (checkpoint format {version}, "
                          f"this one reads {CHECKPOINT_FORMAT}); resume it with that version, or start again")
    if old.get("info", {}).get("vocab", None) != config["info"].get("vocab", None) or old["K"] != config["K"]:
        raise rc.RNNError(f"{path} was written for another vocabulary (K={old['K']}, this text has "
                          f"K={config['K']}); resume with the same data_path, or use a new run_dir")
    if old["data"] != config["data"]:
        raise rc.RNNError(f"{path} was written for another text ({old['data'].split(':')[0]} characters "
                          f"of training text, now {config['data'].split(':')[0]} or different ones); "
                          f"resume with the same data_path and val_fraction, or use a new run_dir")
    flat = {**{k: v for k, v in config.items() if k != "info"}, **config["info"]}
    flat_old = {**{k: v for k, v in old.items() if k != "info"}, **old.get("info", {})}
    diff = [f"{k}={flat_old.get(k)!r} there, {v!r} now" for k, v in flat.items() if flat_old.get(k) != v]
    if diff:
        raise rc.RNNError(f"{path} belongs to a run with other settings ({'; '.join(diff)}); resume "
                          f"with the same settings (only n_updates may change), or use a new run_dir")
    k = saved.get("k")
    if not isinstance(k, int) or k < 0:
        raise rc.RNNError(f"{path}: its update count is {k!r}; the file is damaged: start the run again")
    if k > n_updates:
        raise rc.RNNError(f"{path} is at update {k:,}, beyond n_updates = {n_updates:,}; "
                          f"set n_updates >= {k} to continue it")
    return saved
