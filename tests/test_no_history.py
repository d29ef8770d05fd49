"""No work-log history in the product: no file of the repository refers to a numbered session, issue or turn of
the work that produced it. Code, docs, JSON and model cards state what a thing is and does, with its current
figures; the history lives in git and in CHANGELOG.md (by version, not by work log)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a numbered work-log reference in any case and spelling: the word (or its plural), then spaces, "#", "_" or "-",
# then a number (the examples the scanner must catch are in the first test, split so that this file stays clean)
PATTERN = re.compile(r"\b(session|issue|turn)s?[ _#-]*[0-9]+", re.IGNORECASE)
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules"}
BINARY_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".mp4", ".avi", ".mkv", ".webm", ".safetensors", ".pt", ".pth",
    ".bin", ".npz", ".npy", ".zip", ".gz", ".tar", ".whl", ".pyc", ".so", ".pdf", ".woff", ".woff2", ".ttf",
}


def text_files(root: Path):
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in rel[:-1]) or not path.is_file():
            continue
        if path.suffix.lower() in BINARY_SUFFIXES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        yield path, data.decode("utf-8", errors="replace")


def history_mentions(root: Path) -> list[str]:
    """`file:line: text` of every numbered work-log reference under `root`."""
    found = []
    for path, text in text_files(root):
        for number, line in enumerate(text.splitlines(), 1):
            match = PATTERN.search(line)
            if match:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()[:160]}")
    return found


def test_the_scanner_finds_each_spelling_and_skips_what_is_not_the_product(tmp_path: Path) -> None:
    session, issue, turn = "sess" + "ion", "iss" + "ue", "tu" + "rn"  # spelled in pieces: this file stays clean
    lines = [f"Measured in {session.title()} 12.", f"{session}s 13-14 chose it", f"see {issue} #7",
             f"{turn} 3 of the review", f'"{session}15": {{}}', f"{session.upper()}_2 = []", "return 3  # not a turn",
             "the stream's session id is 4a"]
    (tmp_path / "doc.md").write_text("\n".join(lines) + "\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x.py").write_text(f"# {session} 1\n")
    (tmp_path / "pkg.egg-info").mkdir()
    (tmp_path / "pkg.egg-info" / "PKG-INFO").write_text(f"{session} 1\n")
    (tmp_path / "frame.png").write_bytes(b"\x89PNG " + f"{session} 1".encode())
    assert [m.split(":")[1] for m in history_mentions(tmp_path)] == ["1", "2", "3", "4", "5", "6"]


def test_no_file_refers_to_a_numbered_session_issue_or_turn() -> None:
    found = history_mentions(REPO)
    assert not found, (
        f"{len(found)} numbered work-log references; state the present instead (what it is, does, measures):\n"
        + "\n".join(found))
