"""The student's own words in the report: a Markdown file of theirs (make report NOTES=my-notes.md;
notes.md by default when it exists), kept outside reports/ and never written by make but for
`make notes`, which offers a starter and never overwrites one.

Each `## <title>` section of the file is placed at the end of the report's section of that
title; the text before the first heading opens the report. The titles are those of the
notebooks' notes cells (`show.notes(notes, "<title>")`, where the notes appear in Jupyter too),
in the report's order (render.notes_titles). Standard library only: the planner checks the
notes before any work.
"""
from __future__ import annotations

import re
from pathlib import Path

OPENING = ""     # the title of the text before the first heading


def read(path, titles=None) -> dict:
    """{title: text} of a notes file ("" for the opening text), titles as the report spells them
    (render.notes_titles()); ValueError in one line for a heading that is no section of the report.
    Without titles, every heading is taken as written."""
    known = {t.lower(): t for t in titles or ()}
    text = re.sub(r"<!--.*?-->", "", Path(path).read_text(encoding="utf-8"), flags=re.S)   # the starter's prompts
    sections, title, lines = {}, OPENING, []
    for line in text.splitlines():
        heading = re.match(r"##\s+(.*?)\s*#*\s*$", line)
        if heading:
            sections[title] = "\n".join(lines).strip()
            name = heading.group(1)
            if titles is None:
                known[name.lower()] = name
            elif name.lower() not in known:
                raise ValueError(f"{path}: the heading '## {name}' names no section of the report; the sections "
                                 f"are: {', '.join(known.values())}")
            title, lines = known[name.lower()], []
        else:
            lines.append(line)
    sections[title] = "\n".join(lines).strip()
    return {t: s for t, s in sections.items() if s}


def starter(titles: list) -> str:
    """A notes file to begin with: the report's sections, each with a question to answer."""
    prompts = {
        "The run": "Why these settings? What did you expect before training?",
        "Gradient check": "How did you convince yourself that the gradients are right?",
        "Smooth loss": "What do you see in the curve: its fast start, the bumps where an epoch begins, where it levels off?",
        "Synthesized text": "When did the samples start to look like the book? Which words or shapes came first?",
        "Held-out loss": "How does the loss on unseen text compare with the training loss, and why?",
        "Sampling": "Which temperature or top-p reads best, and why?",
        "Speed": "What made the difference in speed?",
        "Conclusion": "What did you learn, and what would you try next?",
    }
    out = ["<!-- Your own words for the report. Text before the first heading opens the report; each",
           "     '## <section>' below goes at the end of that section. Delete the sections you do not",
           "     need; the headings must stay as they are. Markdown: *emphasis*, lists, $math$. -->", ""]
    for t in titles:
        out += [f"## {t}", "", f"<!-- {prompts.get(t, '')} -->", ""]
    return "\n".join(out)
