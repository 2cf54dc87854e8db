"""Showing sampled text, numbers, tables and plots in Jupyter and in the PDF alike: sampled text as it is (long lines broken, nothing read as markup), characters the
PDF font lacks written out, numbers with the digits that matter.
"""
from __future__ import annotations

import functools
import html
import math
import re
import unicodedata
from pathlib import Path

from workbook.textfiles import EOT


@functools.lru_cache(maxsize=1)   # read the font once per process
def font_charmap() -> frozenset:
    """Code points the PDF's monospaced font (DejaVu Sans Mono) can draw."""
    try:
        import matplotlib
        from matplotlib.ft2font import FT2Font
        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
        have = set(FT2Font(str(path)).get_charmap())
    except Exception:  # noqa: BLE001 - without the font file, assume Basic Latin and Latin-1 only
        have = set(range(32, 127)) | set(range(160, 256))
    return frozenset(have | {9, 10})


def for_pdf(text: str) -> tuple[str, int]:
    """text with each character the PDF font lacks (emoji, ...) written as [U+XXXX]; and their count."""
    have = font_charmap()
    out, n = [], 0
    for ch in text:
        if ord(ch) in have:
            out.append(ch)
        else:
            out.append(f"[U+{ord(ch):04X}]")
            n += 1
    return "".join(out), n


def unshown_note(text: str) -> str:
    """What the characters of text that the PDF cannot draw are, in one sentence: control characters
    (no glyph anywhere) apart from the rest (emoji and other symbols outside the font)."""
    have = font_charmap()
    missing = [ch for ch in text if ord(ch) not in have]
    control = sum(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in missing)
    other = len(missing) - control
    parts = ([f"{control} control character{'s' if control > 1 else ''} (invisible)"] if control else []) + \
            ([f"{other} character{'s' if other > 1 else ''} outside the PDF font (emoji and other symbols)"]
             if other else [])
    return " and ".join(parts) + " shown as [U+code point]." if parts else ""


def shown(text: str) -> str:
    """Sampled text for display: each end of a tweet as a visible pilcrow and a line break."""
    return text.replace(EOT, "\u00b6\n")


def latex_verbatim(text: str) -> str:
    # fvextra breaks long lines anywhere; a line that would end the environment is spaced out
    body = re.sub(r"(?m)^(\s*)\\end\{Verbatim\}", r"\1\\end {Verbatim}", text)
    return ("\\begin{Verbatim}[frame=single, framesep=2mm, rulecolor=\\color{black!25}, "
            "fontsize=\\small, breaklines=true, breakanywhere=true, showspaces=false]\n"
            f"{body}\n\\end{{Verbatim}}\n")


class Text:
    """Sampled text shown as it is: monospaced, long lines broken, nothing interpreted as markup."""

    def __init__(self, text: str, label: str = ""):
        self.text, self.label = text, label

    def _repr_mimebundle_(self, include=None, exclude=None):
        # keep a label on the page of its text: start a new page unless ~8 lines are left
        label_tex = f"\\Needspace{{8\\baselineskip}}\\textbf{{{latex_escape(self.label)}}}\n\n\\nopagebreak\n" \
            if self.label else ""
        label_html = f"<b>{html.escape(self.label)}</b>" if self.label else ""
        safe, n = for_pdf(self.text)
        note = f"\\par{{\\footnotesize {unshown_note(self.text)}}}\n" if n else ""
        return {
            "text/plain": (self.label + "\n" if self.label else "") + self.text,
            "text/html": f"{label_html}<pre style='white-space: pre-wrap; border: 1px solid #ccc; "
                         f"padding: 4px'>{html.escape(self.text)}</pre>",
            "text/latex": label_tex + latex_verbatim(safe) + note,
        }


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(s: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in s)


def markdown_table(header: list, rows: list, align: str = "") -> str:
    """A pipe table; pandoc turns it into a LaTeX table in the report.

    align: one letter per column, l or r; by default the first column left, the rest right.
    """
    def cell(v):
        return str(v).replace("|", "\\|")
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(map(cell, header)) + " |",
             "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_int(n) -> str:
    return f"{int(n):,}"


def fmt_e(x) -> str:
    return "0" if x == 0 else f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def fmt_small(x: float) -> str:
    """A spread or a difference with enough decimals to show it: 0.012, 0.00034; 0 only when it is 0."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    leading = math.floor(math.log10(abs(float(f"{x:.2g}"))))    # of x rounded to two digits
    return f"{x:.{max(3, 1 - leading)}f}"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def nats_per_char(loss: float, reduction: str, seq_length: int) -> float:
    return loss / seq_length if reduction == "sum" else loss


def legend_below(ax, ncol: int = 3) -> None:
    """The legend under the axes, where no line of the plot can cross it."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)
