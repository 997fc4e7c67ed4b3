"""How every process logs: one configuration, and the context each line carries.

``configure()`` is called once by each process at its start: web
(gateway/app.py), relay (workers/relay.py), worker and beat (workers/app.py,
through Celery's ``setup_logging`` signal) and the ``simpleams`` command
(gateway/cli.py). It sends every record, uvicorn's included, to standard error
in one of two formats, chosen by ``SIMPLEAMS_LOG_FORMAT``:

- ``text`` (the default; what ``make up`` prints): ``time LEVEL logger
  message``, then the context fields, ``key=value``, each one the message
  does not already show.
- ``json``: one JSON object per line (python-json-logger), with ``timestamp``,
  ``level``, ``logger``, ``message``, ``process``, the context fields, any
  ``extra`` fields, and ``exc_info`` for a traceback.

The context: ``context()`` opens one (a request, a side-effect task) and
``bind()`` adds to it (the tenant once it is known); every line logged
inside it carries its fields, whoever logs it and however deep. They live
in a ``contextvars.ContextVar``, so concurrent requests on one event loop
never see each other's. The fields this project sets
(docs/development.md, "Logs"): ``request_id``, ``tenant`` (a slug), ``route`` (a route template,
never a path with ids or a query), ``effect``, ``event_id`` and ``event_ids``;
the access line adds ``status`` and ``duration_ms``. No field holds a token,
a password, a cookie, an email address or a person's name.

Nothing of ours is imported here: gateway and workers both use this module,
and it knows neither.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMAT_VARIABLE = "SIMPLEAMS_LOG_FORMAT"
FORMATS = ("text", "json")

# The context fields, in the order the text format appends them.
CONTEXT_FIELDS = ("request_id", "tenant", "route", "effect", "event_id", "event_ids")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Record attributes that libraries add and that only repeat the message:
# uvicorn's ANSI-coloured copy of it, Celery's task-failure details.
_REPEATS_THE_MESSAGE = ("color_message", "data")

# uvicorn configures these loggers with handlers of their own, in its own
# format, before the application exists; they are sent to ours instead.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")

_fields: ContextVar[dict[str, Any] | None] = ContextVar("simpleams_log_fields", default=None)


def enter(**fields: Any) -> Token[dict[str, Any] | None]:
    """Open a context inside the current one: its fields and these (``None``
    removes one). Close it with ``leave(token)``, in the same thread or task;
    ``context()`` does both."""
    merged = {**(_fields.get() or {}), **fields}
    return _fields.set({key: value for key, value in merged.items() if value is not None})


def leave(token: Token[dict[str, Any] | None]) -> None:
    _fields.reset(token)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Every line logged inside carries these fields, and the enclosing context's."""
    token = enter(**fields)
    try:
        yield
    finally:
        leave(token)


def bind(**fields: Any) -> None:
    """Add fields to the innermost open context, for the rest of it, even when
    called deeper (in a child task or a thread that copied the context).
    Outside any context, nothing: there is nothing to describe."""
    current = _fields.get()
    if current is not None:
        current.update({key: value for key, value in fields.items() if value is not None})


def current() -> Mapping[str, Any]:
    """The fields of the innermost open context (empty outside any)."""
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Copy the open context's fields onto each record the handler emits;
    an ``extra`` field of the same name, set by the caller, wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_fields.get() or {}).items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, then ``key=value`` for each context field the record
    has, unless the message already says it; a traceback follows, as usual."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        message = record.message  # set by format() before it calls this
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if value is None:
                continue
            pair = f"{key}={_shown(value)}"
            if pair not in message:
                line += " " + pair
        return line


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(process)d",
        rename_fields={"levelname": "level", "name": "logger"},
        reserved_attrs=[*RESERVED_ATTRS, *_REPEATS_THE_MESSAGE],
        timestamp=True,
    )


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``text`` or ``json``, from ``SIMPLEAMS_LOG_FORMAT``; anything else is a mistake
    worth stopping for (a log shipper expecting JSON would drop every line)."""
    chosen = (os.environ if environ is None else environ).get(FORMAT_VARIABLE, "").strip().lower()
    if chosen in ("", "text"):
        return "text"
    if chosen == "json":
        return "json"
    raise ValueError(f"{FORMAT_VARIABLE} must be one of {', '.join(FORMATS)}, not {chosen!r}")


def configure(
    level: int | str = logging.INFO,
    format_name: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every record at ``level`` and above to ``stream`` (standard error) in
    ``format_name`` (``SIMPLEAMS_LOG_FORMAT`` when omitted). Called again, it
    replaces the handler it installed before and leaves any other handler alone."""
    chosen = log_format() if format_name is None else format_name
    if chosen not in FORMATS:
        raise ValueError(f"{FORMAT_VARIABLE} must be one of {', '.join(FORMATS)}, not {chosen!r}")
    handler = _OurHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter() if chosen == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # A Python warning (Celery's about running as root, a deprecation) is a
    # line like any other, in the same format, not a bare line on stderr.
    logging.captureWarnings(True)
    for name in _UVICORN_LOGGERS:
        uvicorn = logging.getLogger(name)
        uvicorn.handlers.clear()
        uvicorn.propagate = True
    return handler


class _OurHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure`` installs, told apart from anyone else's."""
