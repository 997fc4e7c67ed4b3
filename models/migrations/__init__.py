"""The schema's migrations (Alembic): the one home of their configuration.

``simpleams migrate`` applies them (gateway/cli.py); ``/readyz`` compares the
database's revision with ``head()`` (gateway/health.py).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from alembic.config import Config
from alembic.script import ScriptDirectory


def config(database_url: str | None = None) -> Config:
    """Alembic's configuration for this package's migrations."""
    configured = Config()
    configured.set_main_option("script_location", str(resources.files("models") / "migrations"))
    if database_url is not None:
        configured.attributes["database_url"] = database_url
    return configured


@cache
def head() -> str:
    """The newest migration's revision: what a database at head records."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:
        raise LookupError("no migrations")
    return revision
