"""The report's pages and parts measured in real output: boxes in a PDF made by the template
(their size against show.ACROSS and show.DOWN, kept whole or broken without loss), characters no
font draws, the report without TeX, and the measured remarks on data whose answer is known."""
import os
import re
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pytest

from workbook import compare, measures, render, show
from test_planner import TINY, make, pdf_text_of

ROOT = Path(__file__).resolve().parents[1]
PAGE_BOTTOM = 842 - 2.2 / 2.54 * 72       # A4 in points, less the template's bottom margin (2.2 cm)
TEXT_HEIGHT = 25.3 / 2.54 * 72

needs_tex = pytest.mark.skipif(bool(render.tex_missing()), reason="TeX is not installed (make tex)")


def words_by_page(pdf: Path) -> list:
    """[[(word, yMin, yMax)] for each page], from pdftotext -bbox."""
    out = subprocess.run(["pdftotext", "-bbox", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    word = re.compile(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">(.*?)</word>')
    return [[(w, float(y0), float(y1)) for y0, y1, w in word.findall(page)] for page in out.split("<page ")[1:]]


def lines_of(pdf: Path) -> list:
    return pdf_text_of(pdf).splitlines()


class Box:
    """show.latex_box alone: one column of small type, as long as asked."""

    def __init__(self, text, label):
        self.text, self.label = text, label

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.text, "text/latex": show.latex_box(self.text, self.label)}


def code(*items) -> nbformat.NotebookNode:
    """A code cell showing items as a notebook would (their mime bundles), its source hidden."""
    outputs = [nbformat.v4.new_output("display_data", data=i._repr_mimebundle_()) for i in items]
    return nbformat.v4.new_code_cell("", outputs=outputs)


def ruler(tag: str, width: int) -> str:
    """A line of exactly width characters with no space, so a break in it shows."""
    return (tag + "abcdefghij" * width)[:width]


def filler() -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell("\n\n".join(["A paragraph that pushes the next box down the page."] * 12))
DOWN_SMALL = [f"S{i:03d}" for i in range(show.DOWN["small"] - 4)]            # the most a whole box holds
DOWN_FOOT = [f"F{i:03d}" for i in range(show.DOWN["footnotesize"] - 4)]
LONG = [f"B{i:03d} a line of a box too long for a page" for i in range(3 * show.DOWN["footnotesize"])]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """One PDF through the report's template: boxes at the edge of show.ACROSS and show.DOWN."""
    if render.tex_missing():
        pytest.skip("TeX is not installed (make tex)")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"title": "boxes", "authors": [{"name": "test"}], "date": "today"}
    across, cols = show.ACROSS["small"], (show.ACROSS["footnotesize"] - 6) // 2
    nb.cells = [
        code(show.Text("\n".join([ruler("X1", across), ruler("X2", across + 1)]))),
        code(show.Samples([("two columns", "\n".join([ruler("Y1", cols), ruler("Y2", cols + 1)]))])),
        filler(), code(Box("\n".join(DOWN_SMALL), "a whole box")),
        filler(), code(show.Samples([("a whole sample", "\n".join(DOWN_FOOT))])),
        filler(), code(show.Text("\n".join(LONG), "a long box")),
        code(show.Text("smile \U0001F600, thumbs \U0001F44D\U0001F3FD\u200d ok\ufe0f \u4e2d")),
    ]
    out = tmp_path_factory.mktemp("boxes")
    return render.write_report(nb, out, "boxes")["pdf"]


def test_a_line_of_across_characters_fits_and_one_more_breaks(boxes):
    """show.ACROSS is the width of a box in characters, measured: a line that long stays one line,
    one character more is broken (in one column of small type, and in two of footnotesize)."""
    lines = lines_of(boxes)
    across, cols = show.ACROSS["small"], (show.ACROSS["footnotesize"] - 6) // 2
    for tag, width in (("X", across), ("Y", cols)):
        assert ruler(tag + "1", width) in lines
        assert not any(ruler(tag + "2", width + 1) in line for line in lines)
        assert any(line.startswith(ruler(tag + "2", width + 1)[:width - 8]) for line in lines)   # broken, not lost


@pytest.mark.parametrize("rows", [DOWN_SMALL, DOWN_FOOT], ids=["small", "footnotesize"])
def test_the_largest_whole_box_is_on_one_page_inside_the_text_area(boxes, rows):
    """show.DOWN: a box of that many lines, label and frame included, starts on a fresh page rather
    than split, stays above the bottom margin, and fills most of the page (DOWN is not too small)."""
    pages = words_by_page(boxes)
    holding = [i for i, words in enumerate(pages) if any(w in rows for w, _, _ in words)]
    assert len(holding) == 1
    ys = [(y0, y1) for w, y0, y1 in pages[holding[0]] if w in rows]
    assert len(ys) == len(rows)
    assert max(y1 for _, y1 in ys) <= PAGE_BOTTOM
    assert max(y1 for _, y1 in ys) - min(y0 for y0, _ in ys) > 0.8 * TEXT_HEIGHT


def test_a_box_longer_than_a_page_breaks_and_loses_nothing(boxes):
    pages = words_by_page(boxes)
    holding = [i for i, words in enumerate(pages) if any(re.fullmatch(r"B\d{3}", w) for w, _, _ in words)]
    assert len(holding) >= 2
    per_page = [sorted(int(w[1:]) for w, _, _ in pages[i] if re.fullmatch(r"B\d{3}", w)) for i in holding]
    found = [n for page in per_page for n in page]
    assert found == list(range(len(LONG)))            # every line once, each page a run of them in order


def test_emoji_are_drawn_a_missing_glyph_boxed_and_invisible_characters_left_out(boxes):
    text = " ".join(lines_of(boxes))
    assert "[U+" not in text and "\ufe0f" not in text and "\u200d" not in text
    if show.system_font(show.EMOJI_FONT):
        assert "smile \U0001F600, thumbs \U0001F44D ok □" in text
        fonts = subprocess.run(["pdffonts", str(boxes)], capture_output=True, text=True, check=True).stdout
        assert "Symbola" in fonts
    else:
        assert "smile □, thumbs □ ok □" in text
    assert "In this box:" in text and "3 invisible characters (joiners, variation selectors, skin tones) left out" in text


# ----------------------------------------------------------------------------- without TeX

def without(tmp_path: Path, programs: set) -> str:
    """A PATH of the same programs as this one's but for programs (links in a folder of tmp_path)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name not in programs and not (bin_dir / name).exists():
                    (bin_dir / name).symlink_to(Path(folder) / name)
    return str(bin_dir)


@needs_tex
def test_without_tex_make_report_trains_writes_the_html_and_says_how_to_add_the_pdf(tmp_path):
    reports = tmp_path / "reports"
    path = without(tmp_path, {"xelatex", "pandoc", "pdftotext", "kpsewhich", "apt-get", "sudo", "brew"})
    env = {**os.environ, "REPORTS": str(reports), "REPORTS_OUTSIDE": "1", "PATH": path}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(["make", "--no-print-directory", "report", "RUN=r", "N_UPDATES=200", f"P={TINY}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = reports / "r"
    assert (run / "report.html").is_file() and not (run / "report.pdf").exists()
    said = [line for line in proc.stdout.splitlines() if "no PDF" in line]
    assert len(said) == 1 and "xelatex" in said[0] and "pandoc" in said[0] and "to add it:" in said[0], proc.stdout
    assert "Traceback" not in proc.stderr
    page = (run / "report.html").read_text(encoding="utf-8")
    for section in ("Gradient check", "Smooth loss", "Synthesized text", "Held-out loss", "Conclusion"):
        assert section in page
    again = make("report", "RUN=r", "N_UPDATES=200", f"P={TINY}", reports=reports)    # TeX back: the PDF, no training
    assert (run / "report.pdf").is_file() and "02_train" not in again.stdout
    assert f"report: {run}/report.pdf" in again.stdout


# ----------------------------------------------------------------------------- the measured remarks

def test_still_falling_compares_the_same_chunks_an_epoch_apart():
    """Chunks in order: the loss of update u is the chunk's difficulty d(u mod e) plus a trend; the
    fall read an epoch apart is the trend's alone, whatever the difficulties."""
    e, n, w = 500, 1300, 200
    u = np.arange(n)
    difficulty = np.random.default_rng(0).uniform(1, 3, e)
    loss = difficulty[u % e] + 2.0 - 0.001 * u
    got = measures.still_falling(loss, u // e, sequential=True, window=w)
    assert got["how"] == "epoch" and got["window"] == w
    assert got["fall"] == pytest.approx(0.001 * e) and got["se"] == pytest.approx(0, abs=1e-9)
    first = measures.still_falling(loss[:450], (u // e)[:450], sequential=True, window=w)   # in the first epoch
    assert first["how"] == "other"
    assert first["fall"] == pytest.approx(loss[50:250].mean() - loss[250:450].mean())
    random = measures.still_falling(loss, u // e, sequential=False, window=w)
    assert random["how"] == "random" and random["fall"] == pytest.approx(loss[900:1100].mean() - loss[1100:].mean())
    assert measures.still_falling(loss[:300], (u // e)[:300], sequential=True, window=w) is None


def test_the_study_verdict_follows_its_rule_at_each_side_of_one_and_two_spreads():
    def groups(lead):      # seeds 0.01 apart: a standard deviation of 0.01 in each setting
        return {"a": [{"per_char": np.array([2.0 + d])} for d in (-0.01, 0.0, 0.01)],
                "b": [{"per_char": np.array([2.0 + lead + d])} for d in (-0.01, 0.0, 0.01)]}
    said = {lead: " ".join(compare.compare_summary(groups(lead)).split()) for lead in (0.005, 0.015, 0.025)}
    assert "within the noise between seeds" in said[0.005]
    assert "not a lead by this rule; more seeds would tell" in said[0.015]
    assert "more than twice the largest seed spread (0.010): it leads" in said[0.025]
    for text in said.values():
        assert compare.RULE in text and "**a** has the lowest final smooth loss" in text


def test_real_words_and_the_sampling_comment():
    words = {"the", "king", "and", "queen"}
    assert measures.real_share("the king and a queen xyzzy qqq", words) == pytest.approx(4 / 6)
    stats = [{"kind": "temperature", "value": t, "real_words": r, "distinct": d, "repeated_trigrams": 0.0}
             for t, r, d in ((0.5, 0.4, 0.5), (1.0, 0.2, 0.8))]
    said = measures.sampling_comment(stats)
    assert "From temperature 0.5 to 1.0, the share of real words goes from 40% to 20%" in said
    assert "repeated word trigrams stay at 0%" in said and "from 0% to 0%" not in said
