"""Measuring sampled text against the book: words, the share of them that are the book's, distinct
words and repeated word trigrams; and the sentence that compares sampling settings by them.
"""
from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
BOOK_WORDS_MAX = 20_000_000    # training characters whose words count as "words of the book"


def words(text: str) -> list:
    """Words as runs of letters (with an inner apostrophe), lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


def word_set(text: str, limit: int = BOOK_WORDS_MAX) -> set:
    """The distinct words of text[:limit], read a block at a time: memory grows with the
    distinct words, not with the text (a list of every word of 200 MB is gigabytes)."""
    found, block, start, end = set(), 1 << 20, 0, min(len(text), limit)
    while start < end:
        stop = min(start + block, end)
        while stop < end and (text[stop].isalpha() or text[stop] == "'"):   # never cut a word in two
            stop += 1
        found.update(w.lower() for w in _WORD.findall(text, start, stop))
        start = stop
    return found


REAL_WORDS = "real words (words of three letters or more that are words of the training text)"


def text_stats(text: str, book_words: set) -> dict:
    """words: count; real_words: real_share (None without words of three letters); distinct: share
    of distinct words; repeated_trigrams: share of word trigrams that occur more than once."""
    ws = words(text)
    n = len(ws)
    tri = list(zip(ws, ws[1:], ws[2:]))
    counts = {}
    for t in tri:
        counts[t] = counts.get(t, 0) + 1
    return {"words": n,
            "real_words": real_share(text, book_words),
            "distinct": len(set(ws)) / n if n else 0.0,
            "repeated_trigrams": sum(c for c in counts.values() if c > 1) / len(tri) if tri else 0.0}


def share(x: float | None) -> str:
    """A share as a whole percentage; a dash where there was nothing to count."""
    return "–" if x is None else f"{x:.0%}"


def sampling_comment(stats: list) -> str:
    """One sentence per kind of setting, from the lowest to the highest value, with the numbers;
    a measure that does not change is said once."""
    parts = []
    names = {"real_words": "the share of real words", "distinct": "distinct words",
             "repeated_trigrams": "repeated word trigrams"}
    for kind in ("temperature", "top-p"):
        rows = sorted((s for s in stats if s["kind"] == kind), key=lambda s: s["value"])
        if len(rows) < 2:
            continue
        lo, hi = rows[0], rows[-1]
        known = [k for k in names if lo[k] is not None and hi[k] is not None]
        moves = [f"{names[k]} {'goes ' if not i else ''}from {share(lo[k])} to {share(hi[k])}"
                 for i, k in enumerate(k for k in known if share(lo[k]) != share(hi[k]))]
        still = [f"{names[k]} {'stays' if k == 'real_words' else 'stay'} at {share(lo[k])}"
                 for k in known if share(lo[k]) == share(hi[k])]
        parts.append(f"From {kind} {lo['value']} to {hi['value']}, " + (listed(moves) if moves else "no measure changes")
                     + ("; " + listed(still) if still else "") + ".")
    return " ".join(parts) or "Give at least two settings of one kind to compare them."


def listed(items: list) -> str:
    """a, b and c."""
    return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]


def real_share(text: str, book_words: set, shortest: int = 3) -> float | None:
    """The share of a text's words of `shortest` letters or more that are words of the book (a
    random string makes short words by chance, seldom longer ones); None without such words."""
    ws = [w for w in words(text) if len(w) >= shortest]
    return sum(w in book_words for w in ws) / len(ws) if ws else None


HEADING = re.compile(r"[A-Z][A-Z' -]*[A-Z]\.")    # a line in capitals ending with a full stop: "ROMEO."


def headings(text: str) -> list:
    """The lines of a text shaped like a play's speaker headings."""
    return [line.strip() for line in text.split("\n") if HEADING.fullmatch(line.strip())]


def still_falling(loss, epoch, sequential: bool, window: int) -> dict | None:
    """How much the per-update loss fell at the end of a run, read where the texts compare. Chunks
    read in order, over an epoch and a window: the last `window` updates against the same chunks
    one epoch earlier, so the text's own difficulty cancels ("epoch"). Shuffled or random chunks:
    against the `window` updates before, both a sample of the whole text ("random"). Chunks in
    order within the first epoch: the window before, on other text ("other": the fall is partly
    the text's). Returns before, after, fall = before - after, its standard error se, how and
    window; None for a run shorter than two windows."""
    import numpy as np
    loss, n, w = np.asarray(loss, dtype=float), len(loss), max(int(window), 2)
    turns = np.flatnonzero(np.diff(epoch))
    if sequential and len(turns) and n - w >= turns[0] + 1:
        e = int(turns[0]) + 1                           # updates in an epoch
        before, after = loss[n - w - e:n - e], loss[n - w:]
        se, how = (before - after).std(ddof=1) / np.sqrt(w), "epoch"     # paired: the same chunks
    elif n >= 2 * w:
        before, after = loss[n - 2 * w:n - w], loss[n - w:]
        se, how = np.sqrt(before.var(ddof=1) / w + after.var(ddof=1) / w), "other" if sequential else "random"
    else:
        return None
    return {"before": before.mean(), "after": after.mean(), "fall": before.mean() - after.mean(),
            "se": float(se), "how": how, "window": w}
