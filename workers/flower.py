"""Start Flower, and only with authentication.

    FLOWER_BASIC_AUTH=user:password python -m workers.flower --port=5555

Flower reads FLOWER_BASIC_AUTH from the environment itself, so the password
never appears on a command line (``ps``, ``docker inspect``). Without it
Flower would serve the task API to anyone; refuse to start instead.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
    if ":" not in credentials:
        sys.exit("workers.flower: set FLOWER_BASIC_AUTH to user:password before starting Flower")
    command = [sys.executable, "-m", "celery", "-A", "workers.app", "flower", *sys.argv[1:]]
    os.execv(sys.executable, command)  # noqa: S606 - becomes Flower, same interpreter


if __name__ == "__main__":
    main()
