"""observability/logs.py: the context every line carries, and the two formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from observability import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where the configured logging writes; the process's logging as it was afterwards."""
    root = logging.getLogger()
    uvicorn = logging.getLogger("uvicorn")
    saved = (root.handlers[:], root.level, uvicorn.handlers[:], uvicorn.propagate)
    out = io.StringIO()
    yield out
    root.handlers[:], uvicorn.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    uvicorn.propagate = saved[3]
    logging.captureWarnings(False)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


log = logging.getLogger("simpleams.test")


# --- the context ------------------------------------------------------------------


def test_contexts_nest_and_close() -> None:
    assert logs.current() == {}
    with logs.context(request_id="r1", tenant="acme"):
        with logs.context(route="/x", tenant=None):
            assert logs.current() == {"request_id": "r1", "route": "/x"}
        assert logs.current() == {"request_id": "r1", "tenant": "acme"}
    assert logs.current() == {}


def test_bind_adds_to_the_open_context_even_from_a_thread_or_task() -> None:
    logs.bind(tenant="nobody")  # outside any context: nothing to describe
    assert logs.current() == {}

    async def authenticate() -> None:
        logs.bind(tenant="acme")

    with logs.context(request_id="r1"):
        worker = threading.Thread(target=logs.bind, kwargs={"route": "/y"})
        worker.start()  # a thread starts with an empty context: bind does nothing there
        worker.join()
        asyncio.run(authenticate())  # asyncio.run copies the context, as a task does
        assert logs.current() == {"request_id": "r1", "tenant": "acme"}


async def test_concurrent_requests_never_see_each_others_fields() -> None:
    seen: dict[str, Any] = {}
    both_bound = asyncio.Barrier(2)

    async def request(request_id: str, tenant: str) -> None:
        with logs.context(request_id=request_id):
            logs.bind(tenant=tenant)
            await both_bound.wait()
            seen[request_id] = logs.current()

    await asyncio.gather(request("a", "acme"), request("b", "globex"))
    assert seen == {
        "a": {"request_id": "a", "tenant": "acme"},
        "b": {"request_id": "b", "tenant": "globex"},
    }


# --- JSON -------------------------------------------------------------------------


def test_json_is_one_object_per_line_with_the_context(stream: io.StringIO) -> None:
    logs.configure(format_name="json", stream=stream)
    with logs.context(request_id="r1", tenant="acme", route="/scim/v2/Users/{id}"):
        log.info("answered %s", 'a "quoted"\nline', extra={"status": 200})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    with logs.context(effect="audit", event_ids=[1, 2]), logs.context(event_id=2):
        log.warning("one event", extra={"color_message": "\x1b[32mone event\x1b[0m"})
    log.info("outside")
    answered, failed, effect, outside = lines(stream)
    assert answered["message"] == 'answered a "quoted"\nline'
    assert answered["level"] == "INFO" and answered["logger"] == "simpleams.test"
    assert answered["timestamp"].endswith("+00:00") and isinstance(answered["process"], int)
    assert {k: answered[k] for k in ("request_id", "tenant", "route", "status")} == {
        "request_id": "r1",
        "tenant": "acme",
        "route": "/scim/v2/Users/{id}",
        "status": 200,
    }
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc_info"]
    assert failed["request_id"] == "r1"
    assert effect["effect"] == "audit" and effect["event_ids"] == [1, 2]
    assert effect["event_id"] == 2 and "color_message" not in effect
    assert "request_id" not in outside and "effect" not in outside


def test_a_field_given_by_the_caller_wins_over_the_context(stream: io.StringIO) -> None:
    logs.configure(format_name="json", stream=stream)
    with logs.context(event_id=1):
        log.info("about another", extra={"event_id": 7, "when": object()})
    [line] = lines(stream)
    assert line["event_id"] == 7
    assert line["when"].startswith("<object object")  # not JSON itself: still a line


# --- text -------------------------------------------------------------------------


def test_text_appends_the_context_the_message_does_not_already_say(
    stream: io.StringIO,
) -> None:
    logs.configure(format_name="text", stream=stream)
    with logs.context(request_id="r1", tenant="acme", route="/login"):
        log.info("signed in tenant=%s", "acme")
    with logs.context(effect="notify", event_ids=[3, 4]):
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("failed")
    first, second, *traceback = stream.getvalue().splitlines()
    assert first.endswith(
        " INFO simpleams.test signed in tenant=acme request_id=r1 route=/login"
    ), first
    assert second.endswith(" ERROR simpleams.test failed effect=notify event_ids=3,4"), second
    assert traceback[0] == "Traceback (most recent call last):"


# --- the configuration ------------------------------------------------------------


def test_the_format_comes_from_the_environment() -> None:
    assert logs.log_format({}) == "text"
    assert logs.log_format({"SIMPLEAMS_LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(ValueError, match="SIMPLEAMS_LOG_FORMAT must be one of text, json"):
        logs.log_format({"SIMPLEAMS_LOG_FORMAT": "logfmt"})


def test_configuring_again_replaces_only_its_own_handler(stream: io.StringIO) -> None:
    theirs = logging.NullHandler()
    logging.getLogger().addHandler(theirs)
    logs.configure(format_name="text", stream=io.StringIO())
    logs.configure(format_name="json", stream=stream, level="warning")
    handlers = logging.getLogger().handlers
    ours = [h for h in handlers if any(isinstance(f, logs.ContextFilter) for f in h.filters)]
    assert theirs in handlers
    assert [getattr(h, "stream", None) for h in ours] == [stream]
    log.info("below the level")
    log.warning("at it")
    assert [line["message"] for line in lines(stream)] == ["at it"]


def test_uvicorn_and_python_warnings_log_in_the_format(stream: io.StringIO) -> None:
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn configures itself
    uvicorn.propagate = False
    logs.configure(format_name="json", stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("running as root", UserWarning, stacklevel=1)
    started, warned = lines(stream)
    assert started["logger"] == "uvicorn.error" and started["message"].startswith("Started")
    assert warned["logger"] == "py.warnings" and "running as root" in warned["message"]
