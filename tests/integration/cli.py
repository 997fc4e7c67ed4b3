"""The `simpleams` command, run as ops run it: a subprocess of this virtualenv's
entry point, pointed at a database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SIMPLEAMS = str(Path(sys.executable).parent / "simpleams")


def simpleams(
    database_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "SIMPLEAMS_BASE_DOMAIN": "simpleams.test"}
    return subprocess.run(
        [SIMPLEAMS, *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )
