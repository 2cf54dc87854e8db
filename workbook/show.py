"""Showing sampled text, numbers, tables and plots in Jupyter and in the PDF alike: sampled text
as it is (long lines broken, nothing read as markup, kept whole on its page), emoji in the PDF
in Symbola, numbers with the digits that matter, and the student's own notes set apart.
"""
from __future__ import annotations

import functools
import html
import math
import re
import subprocess
import unicodedata
from pathlib import Path

from workbook.textfiles import EOT


MONO_FONT, EMOJI_FONT = "DejaVu Sans Mono", "Symbola"   # the PDF's fonts: sampled text, and emoji (optional)
EMOJI = ((0x2600, 0x27BF), (0x1F000, 0x1FAFF))   # code point ranges the PDF draws in EMOJI_FONT (the template)
PLACEHOLDER = "\u25a1"                            # □, for a character no font here draws


def charmap(path) -> frozenset:
    try:
        from matplotlib.ft2font import FT2Font
        return frozenset(FT2Font(str(path)).get_charmap())
    except Exception:  # noqa: BLE001 - a font that cannot be read draws nothing
        return frozenset()


@functools.lru_cache(maxsize=1)   # read the fonts once per process
def drawable() -> frozenset:
    """Code points the PDF can draw: those of its monospaced font (DejaVu Sans Mono), and in the
    EMOJI ranges those of Symbola, when it is installed (Debian's fonts-symbola: make setup)."""
    import matplotlib
    have = set(charmap(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf")) \
        or set(range(32, 127)) | set(range(160, 256))
    for path in system_font(EMOJI_FONT):
        have |= {c for c in charmap(path) if any(lo <= c <= hi for lo, hi in EMOJI)}
    return frozenset(have | {9, 10})


def system_font(family: str) -> list:
    """The files of a font family as fontconfig, which XeLaTeX asks too, finds them; [] without."""
    try:
        out = subprocess.run(["fc-list", f":family={family}", "file"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.rstrip(": ") for line in out.splitlines() if line.strip()]


def invisible(ch: str) -> bool:
    """Zero-width joiners, variation selectors, skin-tone modifiers and other format characters: no
    glyph of their own in a font without colour."""
    c = ord(ch)
    return (unicodedata.category(ch) == "Cf" or 0xFE00 <= c <= 0xFE0F or 0xE0100 <= c <= 0xE01EF
            or 0x1F3FB <= c <= 0x1F3FF)     # skin tones: they colour the emoji before them, in colour fonts only


def for_pdf(text: str) -> tuple[str, dict]:
    """text as the PDF can draw it, and how many characters were changed, by kind: invisible ones
    left out; control characters, and any other the fonts lack, as □ (one character for one, so a
    line breaks around it, never inside)."""
    have = drawable()
    out, changed = [], {"invisible": 0, "control": 0, "missing": 0}
    for ch in text:
        if invisible(ch):
            changed["invisible"] += 1
        elif ord(ch) in have:
            out.append(ch)
        else:
            out.append(PLACEHOLDER)
            changed["control" if unicodedata.category(ch) == "Cc" else "missing"] += 1
    return "".join(out), changed


def unshown_note(changed: dict) -> str:
    """for_pdf's changes in one sentence; "" when there are none."""
    def n(k, one):
        return f"{changed[k]} {one}{'s' if changed[k] > 1 else ''}"
    boxed = [n("missing", "character") + " that no font here draws"] if changed["missing"] else []
    boxed += [n("control", "control character")] if changed["control"] else []
    parts = ([" and ".join(boxed) + ", as " + PLACEHOLDER] if boxed else []) \
        + ([n("invisible", "invisible character") + " (joiners, variation selectors, skin tones) left out"]
           if changed["invisible"] else [])
    return ("In this box: " + "; ".join(parts) + ".") if parts else ""


def shown(text: str) -> str:
    """Sampled text for display: each end of a tweet as a visible pilcrow and a line break."""
    return text.replace(EOT, "\u00b6\n")


def latex_verbatim(text: str, size: str = "small", frame: bool = True) -> str:
    # fvextra breaks long lines anywhere; a line that would end the environment is spaced out
    body = re.sub(r"(?m)^(\s*)\\end\{Verbatim\}", r"\1\\end {Verbatim}", text)
    framing = "frame=single, framesep=2mm, rulecolor=\\color{black!25}, " if frame else ""
    return (f"\\begin{{Verbatim}}[{framing}fontsize=\\{size}, breaklines=true, breakanywhere=true, "
            f"showspaces=false]\n{body}\n\\end{{Verbatim}}\n")


# the template's page (A4, 16.2 cm x 25.3 cm of text) in lines of DejaVu Sans Mono, as XeTeX sets
# them: characters across a framed box of the text's width, and lines down a page, at the two sizes
# boxes use (tests/test_report.py measures both)
ACROSS = {"small": 94, "footnotesize": 104}
DOWN = {"small": 60, "footnotesize": 65}
BROKEN = 4      # a broken line continues after an arrow, this many characters in
GAP = 6         # characters lost to the gap between two columns


def across(size: str, columns: int = 1) -> int:
    """Characters across one of `columns` columns of a text-wide box in this type size."""
    return (ACROSS[size] - GAP * (columns - 1)) // columns


def wrapped_lines(text: str, width: int) -> int:
    """The lines a text takes in a box width characters across, as fvextra breaks them."""
    return sum(1 + max(0, -(-(len(line) - width) // (width - BROKEN))) for line in text.split("\n"))


def box_lines(text: str, size: str, columns: int = 1, within: int = 1) -> int:
    """The lines down a box (its label, frame and note included) in a column of `within` columns
    of the page, its text set in `columns` columns."""
    return -(-wrapped_lines(for_pdf(text)[0], across(size, columns * within)) // columns) + 4


def latex_box(text: str, label: str = "", size: str = "small", columns: int = 1, lead: str = "",
              within: int = 1) -> str:
    """A sentence that leads into the box, a label, its text in a frame (in one or two columns),
    and a note of what the PDF could not draw; within: the columns of the page it sits in. A box
    that fits on a page is kept whole on one (a minipage never breaks), with its lead; a longer
    one breaks across pages, its label and lead kept with its first lines."""
    safe, changed = for_pdf(text)
    note = unshown_note(changed)
    whole = box_lines(text, size, columns, within) + (4 if lead else 0) <= DOWN[size]
    head = ((f"{latex_escape(lead)}\\par\\nopagebreak\\smallskip\n" if lead else "")
            + (f"{{\\raggedright\\textbf{{{latex_escape(label)}}}\\par}}\\nopagebreak\\vspace{{2pt}}\n" if label else ""))
    tail = f"{{\\footnotesize {latex_escape(note)}}}\n" if note else ""
    if columns == 1:
        body = latex_verbatim(safe, size)
    elif whole:     # multicols in a frame of the same grey as a single column's (the template's \\wbbox)
        body = ("\\begin{lrbox}{\\wbbox}\\begin{minipage}{\\dimexpr\\linewidth-2\\fboxsep-2\\fboxrule}\n"
                f"\\begin{{multicols}}{{{columns}}}\n{latex_verbatim(safe, size, frame=False)}\\end{{multicols}}\n"
                "\\end{minipage}\\end{lrbox}\\fcolorbox{black!25}{white}{\\usebox{\\wbbox}}\\par\n")
    else:           # too long for a page: columns that break across pages, between two rules
        body = (f"{{\\color{{black!25}}\\hrule}}\\begin{{multicols}}{{{columns}}}\n{latex_verbatim(safe, size, frame=False)}"
                "\\end{multicols}{\\color{black!25}\\hrule}\\par\n")
    if whole:
        return ("\\par\\noindent\\begin{minipage}{\\linewidth}\n" + head + body + tail
                + "\\end{minipage}\\par\\medskip\n")
    return "\\par\\needspace{8\\baselineskip}\\noindent\n" + head + body + tail + "\\medskip\n"


def html_box(text: str, label: str = "", columns: int = 1, lead: str = "") -> str:
    # columns of at least 24em: two on a wide screen, one on a phone
    flow = "; columns: 24em 2; column-gap: 16px" if columns > 1 else ""
    return ((f"<p>{html.escape(lead)}</p>" if lead else "") + (f"<b>{html.escape(label)}</b>" if label else "")
            + f"<pre style='white-space: pre-wrap; border: 1px solid #ccc; padding: 4px{flow}'>{html.escape(text)}</pre>")


class Text:
    """Sampled text shown as it is: monospaced, long lines broken, nothing interpreted as markup;
    a long text (the passage) in two columns of smaller type. In the PDF its label, frame and note
    stay on one page when they fit on one."""

    LONG = 30    # full-width lines beyond which a text is set in two columns

    def __init__(self, text: str, label: str = "", lead: str = ""):
        self.text, self.label, self.lead = text, label, lead      # lead: a plain sentence kept with the box

    def _repr_mimebundle_(self, include=None, exclude=None):
        two = wrapped_lines(self.text, across("small")) > self.LONG
        return {"text/plain": "".join(x + "\n" for x in (self.lead, self.label) if x) + self.text,
                "text/html": html_box(self.text, self.label, 2 if two else 1, self.lead),
                "text/latex": latex_box(self.text, self.label, "footnotesize", 2, self.lead) if two else
                latex_box(self.text, self.label, lead=self.lead)}


class Samples:
    """Several labelled texts side by side in two columns (the samples during training), each
    kept whole, in a smaller type: the evolution reads at a glance, in a page or so."""

    def __init__(self, items: list):
        self.items = items       # [(label, text)]

    def _repr_mimebundle_(self, include=None, exclude=None):
        boxes = "".join(f"<div>{html_box(t, label)}</div>" for label, t in self.items)
        tallest = min(max(box_lines(t, "footnotesize", within=2) for _, t in self.items), DOWN["footnotesize"])
        return {"text/plain": "\n\n".join(f"{label}\n{t}" for label, t in self.items),
                "text/html": "<div style='display: grid; grid-template-columns: repeat(auto-fit, minmax(20em, 1fr)); "
                             f"gap: 0 12px'>{boxes}</div>",
                # room for the tallest box before the columns start: multicols never moves a whole box on
                "text/latex": f"{{\\footnotesize\\needspace{{{tallest}\\baselineskip}}}}"
                "\\begin{multicols}{2}\\raggedcolumns\n"
                + "".join(latex_box(t, label, "footnotesize", within=2) for label, t in self.items)
                + "\\end{multicols}\n"}


class Notes:
    """The student's own words, set apart from what the workbook measured and wrote: a quotation
    with a bar beside it (the template's), under a label."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self):
        return "\n".join("> " + line for line in (["*The author's notes:*", ""] + self.text.splitlines()))


def notes(path, title: str):
    """The notes file's section of this title, to show at the end of the report's section (in
    Jupyter too); None when the file or the section is not there."""
    from workbook import notes as student_notes
    if not path or not Path(path).is_file():
        return None
    sections = student_notes.read(path)          # make checks the headings (render.notes_titles)
    text = next((s for t, s in sections.items() if t.lower() == title.lower()), None)
    return Notes(text) if text else None


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
