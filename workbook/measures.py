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


def text_stats(text: str, book_words: set) -> dict:
    """words: count; book_words: share found in the training text; distinct: share of distinct
    words; repeated_trigrams: share of word trigrams that occur more than once in the text."""
    ws = words(text)
    n = len(ws)
    tri = list(zip(ws, ws[1:], ws[2:]))
    counts = {}
    for t in tri:
        counts[t] = counts.get(t, 0) + 1
    return {"words": n,
            "book_words": sum(w in book_words for w in ws) / n if n else 0.0,
            "distinct": len(set(ws)) / n if n else 0.0,
            "repeated_trigrams": sum(c for c in counts.values() if c > 1) / len(tri) if tri else 0.0}


def sampling_comment(stats: list) -> str:
    """One sentence per kind of setting, from the lowest to the highest value, with the numbers."""
    parts = []
    for kind in ("temperature", "top-p"):
        rows = sorted((s for s in stats if s["kind"] == kind), key=lambda s: s["value"])
        if len(rows) < 2:
            continue
        lo, hi = rows[0], rows[-1]
        parts.append(
            f"From {kind} {lo['value']} to {hi['value']}, the share of real words (words of the training "
            f"text) goes from {lo['book_words']:.0%} to {hi['book_words']:.0%}, distinct words from "
            f"{lo['distinct']:.0%} to {hi['distinct']:.0%}, and repeated word trigrams from "
            f"{lo['repeated_trigrams']:.0%} to {hi['repeated_trigrams']:.0%}.")
    return " ".join(parts) or "Give at least two settings of one kind to compare them."
