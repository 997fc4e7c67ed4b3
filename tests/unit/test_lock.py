"""The locks in requirements/ are the only source of installed versions
(docs/dependencies.md, "How versions are pinned"): they cover everything
pyproject.toml asks for, agree with each other, carry a hash for every package
and no URL, and the .venv the suite runs in is exactly the dev lock."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"dev": ROOT / "requirements" / "dev.txt", "runtime": ROOT / "requirements" / "runtime.txt"}
RUN_MAKE_LOCK = "pyproject.toml and the lock disagree: run `make lock` and commit requirements/"

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*(?:;(?P<marker>[^\\]+))?"
)


@dataclass(frozen=True)
class Pin:
    version: Version
    marker: Marker | None
    hashes: int

    def applies_here(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> pin, from a `uv pip compile --generate-hashes` file."""
    pins: dict[str, Pin] = {}
    name = ""
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            name = canonicalize_name(match["name"])
            marker = match["marker"]
            assert name not in pins, f"{path.name}: {name} is pinned twice"
            pins[name] = Pin(Version(match["version"]), Marker(marker) if marker else None, 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            pin = pins[name]
            pins[name] = Pin(pin.version, pin.marker, pin.hashes + 1)
    return pins


def roots(extras: tuple[str, ...]) -> list[Requirement]:
    """What pyproject.toml (with the given extras) and requirements/build.in ask for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    for line in (ROOT / "requirements" / "build.in").read_text().splitlines():
        if line.split("#")[0].strip():
            lines.append(line.split("#")[0].strip())
    return [Requirement(line) for line in lines]


def unlocked(requirements: list[Requirement], pins: dict[str, Pin]) -> list[str]:
    """Every requirement reachable from `requirements` on this platform (extras
    followed through the installed packages' metadata) that the lock misses or
    pins outside its range."""
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(req, frozenset[str]()) for req in requirements]
    while pending:
        req, parent_extras = pending.pop()
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in (parent_extras or {""})
        ):
            continue
        name = canonicalize_name(req.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{req} is not in the lock")
            continue
        if not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req} but the lock has {name}=={pin.version}")
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            children = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is locked but not installed (run `make install`)")
            continue
        pending += [(Requirement(child), frozenset(req.extras)) for child in children]
    return sorted(problems)


@pytest.mark.parametrize(("lock", "extras"), [("dev", ("dev",)), ("runtime", ())])
def test_the_lock_covers_everything_pyproject_asks_for(lock: str, extras: tuple[str, ...]) -> None:
    problems = unlocked(roots(extras), read_lock(LOCKS[lock]))
    assert problems == [], f"{RUN_MAKE_LOCK}.\nIn requirements/{lock}.txt: " + "; ".join(problems)


def test_runtime_runs_the_versions_the_suite_tested() -> None:
    dev, runtime = read_lock(LOCKS["dev"]), read_lock(LOCKS["runtime"])
    differ = {
        n: (str(p.version), str(dev[n].version) if n in dev else None) for n, p in runtime.items()
    }
    assert {n: v for n, v in differ.items() if v[0] != v[1]} == {}, RUN_MAKE_LOCK


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_names_versions_and_hashes_only(lock: str) -> None:
    text = LOCKS[lock].read_text()
    assert re.findall(r"https?://\S+", text) == [], "a lock must not name a download address"
    pins = read_lock(LOCKS[lock])
    assert len(pins) > 40
    assert sorted(name for name, pin in pins.items() if pin.hashes == 0) == []


def test_the_venv_is_exactly_the_dev_lock() -> None:
    """make install installs from the lock only; anything else in .venv was
    installed by hand and is not what CI tests."""
    pins = read_lock(LOCKS["dev"])
    installed = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }
    installed.pop(canonicalize_name("simpleams-provisioning"))
    wanted = {name: pin.version for name, pin in pins.items() if pin.applies_here()}
    assert {n: v for n, v in installed.items() if wanted.get(n) != v} == {}, (
        "installed but not locked (or at another version); `make install` reinstalls from the lock"
    )
    assert sorted(set(wanted) - set(installed)) == [], (
        "locked but not installed: run `make install`"
    )


def test_a_requirement_missing_from_the_lock_names_make_lock() -> None:
    """The check above can fail: a new dependency, or a raised bound, is reported."""
    pins = read_lock(LOCKS["dev"])
    problems = unlocked(
        [Requirement("some-new-library>=1"), Requirement(f"redis>{pins['redis'].version}")], pins
    )
    assert problems == [
        f"redis>{pins['redis'].version} but the lock has redis=={pins['redis'].version}",
        "some-new-library>=1 is not in the lock",
    ]
    assert unlocked(roots(("dev",)), pins) == []
