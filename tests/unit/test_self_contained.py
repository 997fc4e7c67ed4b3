"""Nothing in the repository points outside it: a reader of a comment, a doc
or a test finds what it cites here (docs/ holds what the code relies on)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Notes that lived beside the repository once; their facts are in docs/ now.
OUTSIDE = re.compile(r"\bDEPENDENCIES\.md\b|\bSTYLE\.md\b|\.\./shared\b")


def outside_references(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_file_cites_a_document_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    paths = [ROOT / name for name in tracked if name and (ROOT / name).is_file()]
    paths = [p for p in paths if p != Path(__file__).resolve()]
    assert len(paths) > 100
    assert outside_references(paths) == []


def test_the_check_finds_a_citation(tmp_path: Path) -> None:
    cited = ROOT / "tests" / f"_cites_{tmp_path.name}.py"
    cited.write_text("# escaped as measured (DEPENDENCIES.md)\n")
    try:
        assert outside_references([cited]) == [
            f"{cited.relative_to(ROOT)}:1: # escaped as measured (DEPENDENCIES.md)"
        ]
    finally:
        cited.unlink()
