"""Every link inside the docs resolves, and every section the code cites exists.

- A Markdown link to a file of the repository (``[x](docs/scim.md#groups)``)
  must name a file that exists and, with an anchor, a heading of that file,
  anchored as GitHub anchors it.
- A comment or docstring citing a section of a document
  (``docs/performance.md, "Relay linger"``) must name a heading of that
  document, so that renaming a section cannot leave the code pointing nowhere.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
CITATION = re.compile(r"((?:docs/)?[\w.-]+\.md),?\s+\"([^\"]+)\"")


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``document``."""
    seen: Counter[str] = Counter()
    found = set()
    fenced = False
    for line in document.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = HEADING.match(line)
        if fenced or heading is None:
            continue
        text = re.sub(r"`([^`]*)`", r"\1", heading.group(2))
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def headings(document: Path) -> set[str]:
    return {
        match.group(2)
        for line in document.read_text().splitlines()
        if (match := HEADING.match(line)) is not None
    }


DOCUMENTS = tracked("*.md")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_in_a_document_resolves(document: Path) -> None:
    broken = []
    fenced = False
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        if fenced:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # https:, mailto: (outside the repository)
                continue
            path, _, anchor = target.partition("#")
            resolved = (document.parent / path).resolve() if path else document
            if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
                broken.append(f"line {number}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"line {number}: {target} (no such heading)")
    assert broken == [], f"{document.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_section_the_code_cites_exists() -> None:
    broken = []
    for source in tracked("*.py", "*.sh", "Makefile", "*.yml", "*.toml"):
        text = source.read_text(errors="replace")
        joined = re.sub(r"\n\s*(#\s*)?", " ", text)  # citations wrap across comment lines
        for name, title in CITATION.findall(joined):
            document = ROOT / name
            if not document.exists():
                broken.append(f"{source.relative_to(ROOT)}: {name} does not exist")
            elif title not in headings(document):
                broken.append(f'{source.relative_to(ROOT)}: {name} has no section "{title}"')
    assert broken == []


def test_the_checks_see_the_documents() -> None:
    names = {str(path.relative_to(ROOT)) for path in DOCUMENTS}
    assert {"README.md", "RELIABILITY.md", "docs/architecture.md"} <= names
    assert "architecture" in anchors(ROOT / "docs/architecture.md")
