"""The documentation stays true: a short README, every relative link resolving, and every make
target and variable it names known to `make help`."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def code_of(text: str) -> list:
    """What a page shows as code: its `spans` and the lines of its indented blocks."""
    return re.findall(r"`([^`\n]+)`", text) + [line.strip() for line in text.splitlines() if line.startswith("    ")]


def test_the_readme_is_read_in_two_minutes():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 120


def test_every_relative_link_resolves():
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue                        # a web address
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name}: {target}"
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", file.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name}: {target}"


def test_every_make_target_and_variable_the_docs_name_exists():
    helped = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    targets = set(re.findall(r"^  make ([a-z-]+)", helped, re.M))
    variables = set(re.findall(r"^  ([A-Z_]+)\s", helped, re.M))
    named_targets, named_variables = set(), set()
    for page in PAGES:
        for code in code_of(page.read_text(encoding="utf-8")):   # a command starts its span or line
            named_targets |= set(re.findall(r"^make ([a-z][a-z-]*)", code))
            named_variables |= set(re.findall(r"(?:^|[\s\"'])([A-Z][A-Z_]+)=", code))
    assert {"report", "test", "notes", "study", "example-page"} <= named_targets
    assert named_targets - targets == set()
    assert {"SEED", "PRESET", "DATA", "RESUME", "NOTES", "GRID"} <= named_variables
    assert named_variables - variables - {"OPENBLAS_NUM_THREADS", "MPLBACKEND"} == set()
