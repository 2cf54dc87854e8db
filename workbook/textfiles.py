"""Reading texts (file checks, decoding, tweet archives, the run's text as corpus.npz): the file
checked before it is opened, decoding with line and column of a bad byte, tweet archives, and
the run's text (Corpus), read once per run and kept in the run folder for every notebook.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import rnn_core as rc
from workbook.files import atomic_write

CORPUS_FILE = "corpus.npz"   # in the run folder: the text as the run read it
EOT = "\x03"                 # end of a tweet: a control character no tweet contains once load_tweets is done
_LINK = re.compile(r"https?://\S+")


# ----------------------------------------------------------------------------- one file

SYSTEM_FILES = ("/proc", "/sys", "/dev")   # the kernel's files: regular by stat, and a read may never end


def check_text_file(path) -> Path:
    """path, if it names a regular file (or a link to one) of a disk; else RNNError saying what
    it is. Asked before opening: reading a FIFO waits forever, /dev/zero never ends, and
    /proc/kmsg is a regular file by stat whose read waits for the kernel's next message."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise rc.RNNError(f"{p} is a link to {os.readlink(p)}, which does not exist; give the path of a UTF-8 text file")
    if not p.exists():
        raise rc.RNNError(f"no such file: {p} (give the path of a UTF-8 text file, e.g. DATA=data/shakespeare.txt)")
    if p.is_dir():
        raise rc.RNNError(f"{p} is a folder; give the path of a UTF-8 text file inside it")
    system = next((d for d in SYSTEM_FILES if p.resolve().is_relative_to(d)), None)
    if system and p.is_file():
        raise rc.RNNError(f"{p} is a file of the operating system ({system}), not a text file; "
                          f"give the path of a UTF-8 text file")
    if not p.is_file():
        kind = "a FIFO (named pipe)" if p.is_fifo() else "a device" if p.is_char_device() or p.is_block_device() \
            else "not a regular file"
        raise rc.RNNError(f"{p} is {kind}, not a text file; give the path of a UTF-8 text file")
    return p


def utf16(raw: bytes) -> bool:
    """Whether bytes look like UTF-16: its byte-order mark, or a NUL beside every other byte of
    the start (text in Latin letters, written two bytes a character)."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = raw[:4096]
    return len(head) >= 8 and (head[0::2].count(0) == len(head[0::2]) or head[1::2].count(0) == len(head[1::2]))


def read_bytes(path) -> bytes:
    """The bytes of a text file, once check_text_file has said it is one."""
    p = check_text_file(path)
    try:
        return p.read_bytes()
    except OSError as err:
        raise rc.RNNError(f"cannot read {p}: {err.strerror or err} (check its permissions)") from None


def as_lf(text: str) -> tuple[str, int]:
    """text with CRLF and lone CR line endings as LF, and how many were converted."""
    n = text.count("\r")
    return (text.replace("\r\n", "\n").replace("\r", "\n"), n) if n else (text, 0)


def decode_text(raw: bytes, path) -> tuple[str, int]:
    """The text of bytes read from path (named in the errors), its line endings as LF (a book
    saved on another system gives the same characters), and how many were converted."""
    p = Path(path)
    if not raw.strip():
        raise rc.RNNError(f"{p} is empty; give a text of at least seq_length + 1 characters")
    if utf16(raw):
        raise rc.RNNError(f"{p} is UTF-16, not UTF-8; re-save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8)")
    if b"\x00" in raw[:65536]:
        raise rc.RNNError(f"{p} is a binary file (it has NUL bytes), not text; give a UTF-8 text file")
    try:
        text = raw.decode("utf-8-sig")  # -sig: a leading byte-order mark is not a character of the book
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise rc.RNNError(f"{p} is not UTF-8: byte 0x{raw[err.start]:02x} at line {line}, column {column}; "
                          f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    return as_lf(text)


def read_text(path) -> tuple[str, int]:
    """The text of a file, checked, and the number of line endings converted to LF."""
    return decode_text(read_bytes(path), path)


# ----------------------------------------------------------------------------- tweets

def load_tweets(paths, *, keep_retweets: bool = False, keep_links: bool = False, texts=None) -> str:
    """The training text of one or more tweet-archive JSON files, each tweet ended by EOT.

    Each file is a list of objects with source, id_str, text, created_at, retweet_count,
    in_reply_to_user_id_str, favorite_count and is_retweet. HTML entities in text (&amp; ...)
    are unescaped; retweets (is_retweet, or text starting "RT @") are dropped unless
    keep_retweets; http(s) links are removed unless keep_links. Tweets left empty are dropped.
    texts: the files' contents, when they have been read already.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise rc.RNNError("no tweet files given; pass a path or a list of paths to tweet-archive JSON files")
    out = []
    for i, path in enumerate(paths):
        p = Path(path)
        raw = read_text(p)[0] if texts is None else texts[i]    # missing, binary, non-UTF-8: named there
        try:
            tweets = json.loads(raw)
        except json.JSONDecodeError as err:
            raise rc.RNNError(f"{p} is not JSON: {err.msg} at line {err.lineno}, column {err.colno}; "
                              f"give a tweet-archive file (a JSON list of tweets)") from None
        except RecursionError:
            raise rc.RNNError(f"{p} nests its JSON too deep to read; give a tweet-archive file "
                              f"(a JSON list of tweets)") from None
        if not isinstance(tweets, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str)
                                                    for t in tweets):
            raise rc.RNNError(f"{p} is not a tweet archive: expected a JSON list of objects with a \"text\" field")
        for t in tweets:
            text = html.unescape(t["text"])
            if not keep_retweets and (t.get("is_retweet") is True or text.startswith("RT @")):
                continue
            if not keep_links:
                text = _LINK.sub("", text)
            text = re.sub(r"[ \t]{2,}", " ", as_lf(text.replace(EOT, ""))[0]).strip()
            if text:
                out.append(text + EOT)
    if not out:
        raise rc.RNNError(f"no tweets left in {', '.join(map(str, paths))} after dropping retweets and empty ones")
    return "".join(out)


# ----------------------------------------------------------------------------- the run's text

def encode_compact(vocab: rc.Vocab, text: str) -> np.ndarray:
    """vocab.encode(text) in the smallest unsigned type that holds K - 1 (one byte a character
    for most books instead of eight), a million characters at a time, so that memory stays near
    the result's: a 200 MB book is not made 1.6 GB. Training widens each chunk as it reads it."""
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if vocab.K - 1 <= np.iinfo(t).max)
    out = np.empty(len(text), dtype=dtype)
    block = 1 << 20
    for start in range(0, len(text), block):
        out[start:start + block] = vocab.encode(text[start:start + block])
    return out


@dataclass(frozen=True, eq=False)
class Corpus:
    """A run's text as every notebook of the run sees it, as vocabulary indices.

    codes[:cut] is the training text and codes[cut:] the held-out end (val_fraction), one byte
    per character for most books; text(start, stop) gives characters back. sha256 has one
    digest per file, of the bytes that were read.
    """
    name: str
    vocab: rc.Vocab
    codes: np.ndarray
    cut: int
    reset_ix: int | None
    line_endings_converted: int
    sha256: tuple
    key: str

    @property
    def train(self) -> np.ndarray:
        return self.codes[:self.cut]

    @property
    def val(self) -> np.ndarray:
        return self.codes[self.cut:]

    def __len__(self) -> int:
        return len(self.codes)

    def text(self, start: int = 0, stop: int | None = None) -> str:
        return self.vocab.decode(self.codes[start:stop])


def load_corpus(data_path, corpus_format: str = "text", val_fraction: float = 0.0,
                keep_retweets: bool = False, keep_links: bool = False, run_dir=None, *,
                quiet: bool = False) -> Corpus:
    """The text, its vocabulary and its split (see read_corpus), read once per run.

    With run_dir, the run folder's corpus.npz is used when it was read from the same files with
    the same settings, and the files are unchanged since (the same size, time and inode); else
    the files are read and corpus.npz written, when the folder exists. The planner writes it
    pinned (save_corpus) before a run's notebooks start: the run then keeps the text it started with
    even if the file changes on disk (a note says so, unless quiet). Within one process the
    last corpus is kept in memory, so the checks and the notebook's own cells share one read.
    """
    settings = _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
    key = _corpus_key(data_path, settings)
    corpus = _last_corpus.get(key) if key else None
    if corpus is None:
        corpus = _read_snapshot(Path(run_dir) / CORPUS_FILE, settings, key) if run_dir is not None else None
        if corpus is None:
            corpus = read_corpus(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
            key = corpus.key                 # the files as they were read
        _last_corpus.clear()
        _last_corpus[key] = corpus
    if corpus.key != key:                    # a pinned corpus.npz, and the file changed since
        if not quiet:
            files = ", ".join(json.loads(settings)["files"])
            print(f"note: {files} changed after this run read it; the run goes on with the text as it was "
                  f"read then (kept in {CORPUS_FILE})", file=sys.stderr)
    elif run_dir is not None and Path(run_dir).is_dir():
        save_corpus(corpus, run_dir)
    return corpus


_last_corpus: dict = {}


def forget_corpus() -> None:
    """Let the memory of the last corpus go (the planner, before the notebooks start)."""
    _last_corpus.clear()


def changed_on_disk(key: str) -> bool:
    """Whether the files a corpus was read from (its key) have changed since, or are gone."""
    settings = json.loads(key)[0]
    return _corpus_key(json.loads(settings)["files"], settings) != key


def _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links) -> str:
    """The files (absolute paths) and the settings a corpus is read with."""
    paths = data_path if isinstance(data_path, list) else [data_path]
    try:
        files = [os.path.abspath(p) for p in paths]
    except TypeError:
        files = [repr(p) for p in paths]
    return json.dumps({"files": files, "corpus_format": corpus_format, "val_fraction": val_fraction,
                       "keep_retweets": keep_retweets, "keep_links": keep_links})


def _corpus_key(data_path, settings: str) -> str | None:
    """settings and each file's size, time and inode: equal keys, the same text; None when a
    file cannot be looked at (read_corpus then says why)."""
    paths = data_path if isinstance(data_path, list) else [data_path]
    try:
        stats = [os.stat(p) for p in paths]
    except (OSError, TypeError, ValueError):
        return None
    return json.dumps([settings, [[st.st_size, st.st_mtime_ns, st.st_ino] for st in stats]])


def read_corpus(data_path, corpus_format: str = "text", val_fraction: float = 0.0,
                keep_retweets: bool = False, keep_links: bool = False) -> Corpus:
    """Read the file(s): the text, its vocabulary and its split.

    corpus_format "tweets": data_path is a tweet-archive JSON file (or a list of them), and
    the hidden state restarts after each tweet's end character (reset). The last
    val_fraction of the text is held out (cut at a tweet's end for tweets). Line endings are
    read as LF; line_endings_converted counts the CRLF and CR ones. A file that changes while
    it is read is an error: the digests must be those of the text.
    """
    paths = data_path if isinstance(data_path, list) else [data_path]
    settings = _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
    key = _corpus_key(data_path, settings)
    raws = [read_bytes(p) for p in paths]
    if key is None or _corpus_key(data_path, settings) != key:
        raise rc.RNNError(f"{', '.join(map(str, paths))} changed while it was being read; run again once it is "
                          f"written")
    sha256 = tuple(hashlib.sha256(raw).hexdigest() for raw in raws)
    converted = 0
    if corpus_format == "tweets":
        texts = [decode_text(raw, p)[0] for raw, p in zip(raws, paths)]
        del raws
        text = load_tweets(paths, keep_retweets=keep_retweets, keep_links=keep_links, texts=texts)
        del texts
    else:
        text, converted = decode_text(raws[0], paths[0])
        del raws
    vocab = rc.Vocab(text)
    cut = len(text) - int(round(len(text) * val_fraction))
    if corpus_format == "tweets" and cut < len(text):
        cut = text.rfind(EOT, 0, cut) + 1 or cut
    codes = encode_compact(vocab, text)
    return Corpus(name=Path(paths[0]).name, vocab=vocab, codes=codes, cut=cut,
                  reset_ix=vocab.chars.index(EOT) if corpus_format == "tweets" else None,
                  line_endings_converted=converted, sha256=sha256, key=key)


def save_corpus(corpus: Corpus, run_dir, pin: bool = False) -> None:
    """Write corpus into run_dir's corpus.npz, unless it already holds it (pinned, if asked);
    a cache, so a failed write is let go (the notebooks then read the file)."""
    path = Path(run_dir) / CORPUS_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
        if meta.get("key") == corpus.key and (meta.get("pinned") or not pin):
            return
    except (OSError, ValueError, KeyError, EOFError, AttributeError, RecursionError, zipfile.BadZipFile):
        pass                               # none yet, damaged, or not ours: write it
    meta = {"format": 1, "key": corpus.key, "pinned": pin, "name": corpus.name, "cut": corpus.cut,
            "reset_ix": corpus.reset_ix, "line_endings_converted": corpus.line_endings_converted,
            "sha256": list(corpus.sha256)}
    try:
        atomic_write(path, lambda f: np.savez(f, codes=corpus.codes, chars=np.array(corpus.vocab.chars),
                                              meta=np.array(json.dumps(meta))))
    except rc.RNNError:
        pass


def _read_snapshot(path: Path, settings: str, key: str | None) -> Corpus | None:
    """The corpus in corpus.npz if it was read from these files with these settings, and they
    are unchanged or it is pinned; None if not (or if the file is damaged: the text is then
    read again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
            if not isinstance(meta, dict) or meta.get("format") != 1 or not isinstance(meta.get("key"), str):
                return None
            read_with, stats = json.loads(meta["key"])
            if read_with != settings or not (meta["key"] == key or meta.get("pinned") is True):
                return None
            codes, chars = f["codes"], str(f["chars"][()])
        vocab = rc.Vocab(chars)
        cut, reset_ix = meta["cut"], meta["reset_ix"]
        ok = (codes.ndim == 1 and codes.dtype.kind == "u" and len(codes) > 0 and vocab.chars == chars
              and int(codes.max()) < vocab.K and isinstance(cut, int) and 0 < cut <= len(codes)
              and (reset_ix is None or isinstance(reset_ix, int) and 0 <= reset_ix < vocab.K)
              and isinstance(meta["line_endings_converted"], int) and isinstance(meta["name"], str)
              and isinstance(meta["sha256"], list) and len(meta["sha256"]) == len(stats)
              and all(isinstance(d, str) and len(d) == 64 for d in meta["sha256"]))
        if not ok:
            return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, zipfile.BadZipFile, rc.RNNError):
        return None
    return Corpus(name=meta["name"], vocab=vocab, codes=codes, cut=cut, reset_ix=reset_ix,
                  line_endings_converted=meta["line_endings_converted"], sha256=tuple(meta["sha256"]),
                  key=meta["key"])
