"""models imports no sibling; gateway and workers import models, never each other;
only gateway/scim imports scim2-models."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_top_levels(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("models", {"gateway", "workers"}), ("gateway", {"workers"}), ("workers", {"gateway"})],
)
def test_import_direction(package: str, forbidden: set[str]) -> None:
    offenders = {f: names & forbidden for f, names in imported_top_levels(package).items()}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_only_the_scim_package_imports_scim2_models() -> None:
    users = [
        f
        for package in ("models", "gateway", "workers")
        for f, names in imported_top_levels(package).items()
        if "scim2_models" in names
    ]
    assert users and all(f.startswith("gateway/scim/") for f in users), users


def test_the_operator_command_does_not_load_the_web_application() -> None:
    """`simpleams` runs in scripts and at 3 a.m.: loading the SCIM layer and the
    admin pages doubled its start (3.2 s -> 1.6 s per command on this machine)
    and every CLI test paid for it."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, gateway.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scim2_models', 'jinja2'}), "
            "sorted(m for m in sys.modules if m.startswith(('gateway.scim', 'gateway.admin.'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    assert loaded == "[] ['gateway.admin.accounts', 'gateway.admin.passwords']", loaded
