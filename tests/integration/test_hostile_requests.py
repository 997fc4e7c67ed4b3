"""Requests built to hurt: throttled scanners, forged tokens, stalled or abandoned
bodies, forged Host headers, secrets in query strings.

The body and log tests run a real uvicorn (tests/integration/live_server.py)
and talk to it over raw sockets: what happens to a stalled or abandoned body
depends on the server, not only on the application.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson
import pytest
from sqlalchemy import Engine

from gateway.app import create_app
from gateway.auth import RecentTokens, ScimAuthMiddleware, ThrottledLookups
from gateway.fairness import TenantShares
from gateway.settings import Settings
from gateway.tokens import generate_token, hash_token
from tests.conftest import TenantHandle, make_tenant, user_body
from tests.integration.live_server import running_gateway
from tests.integration.pipeline import wait_for
from tests.integration.test_credential_cache import until

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
# The checksum is public: anyone can make a well-formed token that is nobody's.
BAD_CHECKSUM = "sams_scim_" + "A" * 46


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_from(app: Any, address: str) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=(address, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://localhost/scim/v2")


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The token hashes the gateway looks up in the credential cache or the database."""
    seen: list[str] = []
    original = ScimAuthMiddleware._look_up

    async def counted(self: ScimAuthMiddleware, presented: str) -> Any:
        seen.append(presented)
        return await original(self, presented)

    monkeypatch.setattr(ScimAuthMiddleware, "_look_up", counted)
    return seen


# -- Item 8: refused before any database work or fairness place --------------


async def test_a_throttled_client_is_refused_before_any_credential_lookup(
    app: Any, tenant: TenantHandle, lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_reads: list[str] = []
    cache = app.state.credentials
    original_get = cache.get

    def counted_get(token_hash: str) -> Any:
        cache_reads.append(token_hash)
        return original_get(token_hash)

    monkeypatch.setattr(cache, "get", counted_get)
    refused = generate_token()

    async with client_from(app, "203.0.113.9") as scanner:
        for _ in range(20):
            assert (await scanner.get("/Users", headers=bearer(refused))).status_code == 401
        # A token refused once is not looked up again.
        assert lookups == [hash_token(refused)]
        looked_up, read = len(lookups), len(cache_reads)

        for headers in [bearer(refused)] * 5 + [bearer(BAD_CHECKSUM)] * 5 + [bearer("nope")]:
            throttled = await scanner.get("/Users", headers=headers)
            assert throttled.status_code == 429, throttled.text
            assert int(throttled.headers["retry-after"]) > 0
        assert len(lookups) == looked_up, "a throttled client's request was looked up"
        assert len(cache_reads) == read, "a throttled client's request read the credential cache"

        # The IdP behind the same address keeps working (Entra quarantines on 429).
        assert (await scanner.get("/Users", headers=bearer(tenant.token))).status_code == 200


async def test_fresh_forged_tokens_from_a_throttled_client_cost_one_lookup_a_second(
    app: Any, tenant: TenantHandle, lookups: list[str]
) -> None:
    """The checksum is public, so a scanner can send a new well-formed token each
    time; from a throttled address those cost at most one lookup a second."""
    async with client_from(app, "203.0.113.10") as scanner:
        for _ in range(app.state.settings.auth_failures_per_minute):
            assert (
                await scanner.get("/Users", headers=bearer(generate_token()))
            ).status_code == 401
        before = len(lookups)
        started = time.monotonic()
        answers = [
            (await scanner.get("/Users", headers=bearer(generate_token()))).status_code
            for _ in range(50)
        ]
        elapsed = time.monotonic() - started
        assert set(answers) == {429}
        assert len(lookups) - before <= 1 + int(elapsed), (len(lookups) - before, elapsed)

    # An IdP behind a throttled address still gets through within a second.
    async with client_from(app, "203.0.113.10") as idp:
        async with asyncio.timeout(5):
            while (
                answer := await idp.get("/Users", headers=bearer(tenant.token))
            ).status_code != 200:
                assert answer.status_code == 429
                await asyncio.sleep(0.2)  # the IdP's retry, as Retry-After asks


def test_throttled_lookups_are_one_per_interval_per_address() -> None:
    now = [0.0]
    budget = ThrottledLookups(interval=1.0, max_clients=2, clock=lambda: now[0])
    assert [budget.allow("a"), budget.allow("a"), budget.allow("b")] == [True, False, True]
    now[0] = 1.0
    assert [budget.allow("a"), budget.allow("a")] == [True, False]
    budget.allow("c")  # a third address: the least recent ("b") is forgotten
    assert budget.allow("b") is True


@pytest.fixture
def places(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tenant keys every fairness place is taken for, in order."""
    shares: TenantShares = app.state.tenant_shares
    taken: list[str] = []
    original_place = shares.place

    def recorded(name: str) -> Any:
        taken.append(name)
        return original_place(name)

    monkeypatch.setattr(shares, "place", recorded)
    return taken


async def test_bad_tokens_never_take_a_fairness_place(
    app: Any, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, places: list[str]
) -> None:
    # Hold every lookup of a forged token until released: a place taken for
    # one would still be held while we look at the counters.
    release = asyncio.Event()
    held: list[str] = []
    original = ScimAuthMiddleware._look_up

    async def held_lookup(self: ScimAuthMiddleware, presented: str) -> Any:
        if presented != hash_token(tenant.token):
            held.append(presented)
            await release.wait()
        return await original(self, presented)

    monkeypatch.setattr(ScimAuthMiddleware, "_look_up", held_lookup)
    forged = [generate_token() for _ in range(6)]

    async with client_from(app, "198.51.100.7") as http:
        pending = [asyncio.create_task(http.get("/Users", headers=bearer(t))) for t in forged]
        try:
            await until(lambda: len(held) == len(forged), "the forged tokens' lookups")
            in_progress = app.state.tenant_shares.in_progress()
            assert in_progress == {}, "a forged token holds or waits for a place"
            # The tenant's own requests go ahead meanwhile, one place each.
            for _ in range(3):
                assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200
            for headers in (bearer(BAD_CHECKSUM), bearer("nope"), {}):
                assert (await http.get("/Users", headers=headers)).status_code == 401
            assert len(places) == 3
            assert len(set(places)) == 1
        finally:
            release.set()
            answers = await asyncio.gather(*pending)
    assert [answer.status_code for answer in answers] == [401] * len(forged)
    assert len(places) == 3
    assert app.state.tenant_shares.in_progress() == {}


def test_a_refused_token_is_remembered_for_a_while_and_memory_stays_bounded() -> None:
    now = [0.0]
    refused = RecentTokens(ttl=60, max_entries=3, clock=lambda: now[0])
    refused.add("a")
    now[0] = 59.9
    assert "a" in refused
    now[0] = 60.0
    assert "a" not in refused  # looked up again after a minute
    for name in "bcde":
        refused.add(name)
    assert [name in refused for name in "bcde"] == [False, True, True, True]


async def test_a_chunked_body_over_the_limit_is_413_and_takes_no_place(
    app: Any, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, places: list[str]
) -> None:

    async def chunks() -> Any:  # no Content-Length: the size is only known by reading
        for _ in range(3):
            yield b" " * 600_000

    async with client_from(app, "198.51.100.8") as http:
        response = await http.post("/Users", content=chunks(), headers=tenant.headers)
    assert response.status_code == 413, response.text
    assert response.json()["status"] == "413"
    assert places == []


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body_parts: list[bytes],
    stall: bool = False,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through the ASGI interface, headers exactly as given.

    The body is sent as ``body_parts``; with ``stall`` the last one says more
    is coming, and then the client goes quiet (it neither sends nor leaves).
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("192.0.2.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    parts = list(body_parts)

    async def receive() -> dict[str, Any]:
        if parts:
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": stall or bool(parts)}
        await asyncio.Event().wait()  # quiet until the test ends
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with asyncio.timeout(10):
        await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], dict(sent[0]["headers"]), body


async def test_a_stalled_admin_form_gets_a_408_page(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, body_read_timeout_seconds=0.5))
    try:
        status, headers, body = await asgi_call(
            app,
            "POST",
            "/login",
            [
                (b"host", b"acme.simpleams.test"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", b"100"),
                (b"accept", b"text/html"),
            ],
            [b"", b"email=it%40acme.test&pass"],
            stall=True,  # 100 bytes promised, fewer sent
        )
    finally:
        await app.state.engine.dispose()
    assert status == 408, body
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"did not arrive within 0.5 seconds" in body


# -- Item 12: one strict Host parser --------------------------------------------

MALFORMED_HOSTS = [
    "localhost:1@evil.example",
    "globex.simpleams.test@evil.example",
    "globex.simpleams.test:1:2",
    "globex.simpleams.test:",
    "globex.simpleams.test:http",
    "globex.simpleams.test:99999",
    "globex.simpleams.test/evil",
    "globex.simpleams.test evil",
    "evil.example#.globex.simpleams.test",
    "[::1]:8000@evil.example",
]


def assert_bad_host(response: httpx2.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == "400"
    assert "Host" in body["detail"] and "port" in body["detail"]
    assert "evil" not in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
async def test_malformed_hosts_are_refused_and_never_bypass_the_host_binding(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle, db: Engine, host: str
) -> None:
    make_tenant(db, "globex")
    refused = await anonymous.get("/Users", headers={**bearer(tenant.token), "Host": host})
    assert_bad_host(refused)
    # Outside /scim/v2 as well: the admin pages read the Host header too.
    assert_bad_host(await anonymous.get("http://localhost/login", headers={"Host": host}))


@pytest.mark.parametrize(
    "host",
    [
        "globex.simpleams.test",
        "GLOBEX.simpleams.test:443",
        "globex.simpleams.test.",
        "globex.simpleams.test.:8443",
        "x.globex.simpleams.test",
    ],
)
async def test_another_tenants_host_however_spelled_refuses_the_token(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle, db: Engine, host: str
) -> None:
    make_tenant(db, "globex")
    response = await anonymous.get("/Users", headers={**bearer(tenant.token), "Host": host})
    assert response.status_code == 401, response.text
    assert "different SimpleAMS workspace" in response.json()["detail"]


@pytest.mark.parametrize("order", [0, 1])
async def test_two_host_headers_are_refused(
    app: Any, tenant: TenantHandle, db: Engine, order: int
) -> None:
    make_tenant(db, "globex")
    hosts = [(b"host", b"globex.simpleams.test"), (b"host", b"localhost")]
    headers = [
        *hosts[order:],
        *hosts[:order],
        (b"authorization", bearer(tenant.token)["Authorization"].encode()),
    ]
    status, _, body = await asgi_call(app, "GET", "/scim/v2/Users", headers, [b""])
    assert status == 400, body
    assert b"more than one Host header" in body


HOST_TO_BASE = {
    # Local names and IP literals (a developer, a load balancer's health
    # check) are echoed, rebuilt from the parsed parts.
    "localhost": "http://localhost",
    "localhost:8000": "http://localhost:8000",
    "127.0.0.1:8000": "http://127.0.0.1:8000",
    "[::1]:8000": "http://[::1]:8000",
    "[0:0::1]": "http://[::1]",
    # Anything else gets the tenant's canonical endpoint.
    "ACME.simpleams.test.": "https://acme.simpleams.test",
    "acme.simpleams.test:8443": "https://acme.simpleams.test",
    "evil.example": "https://acme.simpleams.test",
    "evil.example:443": "https://acme.simpleams.test",
    "acme.simpleams.test.evil.example": "https://acme.simpleams.test",
    "localhost.evil.example": "https://acme.simpleams.test",
}


async def test_location_never_names_a_foreign_host(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle
) -> None:
    for n, host in enumerate([*MALFORMED_HOSTS, *HOST_TO_BASE]):
        created = await anonymous.post(
            "/Users", json=user_body(f"loc{n}@acme.test"), headers={**tenant.headers, "Host": host}
        )
        location = created.headers.get("location", "")
        assert "evil" not in location and "@" not in urlsplit(location).netloc, (host, location)
        if host in HOST_TO_BASE:
            assert created.status_code == 201, (host, created.text)
            assert location.startswith(f"{HOST_TO_BASE[host]}/scim/v2/Users/"), (host, location)
            assert created.json()["meta"]["location"] == location
        else:
            assert_bad_host(created)
        assert "evil" not in created.text, host


# -- Items 10 and 12 against a real uvicorn -------------------------------------


@contextmanager
def connection(url: str) -> Iterator[socket.socket]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=20)
    try:
        yield sock
    finally:
        sock.close()


def read_until_head_end(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    head, body = read_until_head_end(sock)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines)
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def start_stalled_post(sock: socket.socket, url: str, token: str) -> None:
    """Promise 1000 bytes, send a few, stop: returns once the gateway reads the body.

    ``Expect: 100-continue`` makes uvicorn say when the application first asks
    for the body, so the test knows the request is in the application.
    """
    host = urlsplit(url).netloc
    sock.sendall(
        f"POST /scim/v2/Users HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/scim+json\r\nContent-Length: 1000\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    head, _ = read_until_head_end(sock)
    assert head.startswith(b"HTTP/1.1 100"), head
    sock.sendall(b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], ')


def wait_for_log(log: Path, condition: Callable[[str], bool], what: str) -> str:
    """The web process's log once ``condition`` holds for it (pipeline.wait_for's polling)."""

    def written() -> str | None:
        text = log.read_text()
        return text if condition(text) else None

    found: str = wait_for(written, f"{what} in the log", timeout=20)
    return found


def test_stalled_bodies_hold_no_place_and_get_a_408(
    database_url: str, tenant: TenantHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout = 4
    monkeypatch.setenv("SIMPLEAMS_BODY_READ_TIMEOUT_SECONDS", str(timeout))
    budget = Settings().scim_requests_in_progress  # one tenant alone may use all of it
    with running_gateway(database_url, tmp_path / "gateway.log") as url, ExitStack() as stack:
        stalled = [stack.enter_context(connection(url)) for _ in range(budget)]
        for sock in stalled:
            start_stalled_post(sock, url, tenant.token)
        started = time.monotonic()
        # The same tenant's reads go ahead (they waited 15 s before).
        with httpx2.Client(base_url=f"{url}/scim/v2", timeout=timeout - 1) as http:
            for _ in range(3):
                assert http.get("/Users", headers=bearer(tenant.token)).status_code == 200
        for sock in stalled:
            status, headers, body = read_response(sock)
            assert status == 408, body
            assert headers["content-type"] == "application/scim+json"
            assert headers["connection"] == "close"
            error = orjson.loads(body)
            assert error["schemas"] == [ERROR] and error["status"] == "408"
            assert f"{timeout} seconds" in error["detail"]
            assert sock.recv(1) == b""  # and the connection is closed
        assert time.monotonic() - started < timeout + 5


def test_a_client_gone_mid_body_is_one_quiet_log_line(
    database_url: str, tenant: TenantHandle, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    with running_gateway(database_url, log) as url:
        with connection(url) as sock:
            start_stalled_post(sock, url, tenant.token)
        text = wait_for_log(
            log,
            lambda t: "disconnected" in t or "Traceback" in t or "Exception in ASGI" in t,
            "the abandoned request",
        )
        assert "Traceback" not in text and "Exception in ASGI" not in text, text
        # Anything logged after that line would be logged before the next request's.
        assert httpx2.get(f"{url}/healthz", timeout=10).status_code == 200
        wait_for_log(log, lambda t: '"GET /healthz" 200' in t, "the marker request")
    text = log.read_text()
    lines = [line for line in text.splitlines() if "/scim/v2/Users" in line]
    assert len(lines) == 1, text
    assert "disconnected" in lines[0] and "INFO" in lines[0]
    for noise in ("Traceback", "ERROR", "unhandled", "Exception"):
        assert noise not in text, text


def test_query_strings_never_reach_the_web_log(
    database_url: str, tenant: TenantHandle, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    person = "secret.person@ex.com"
    lookup = {"filter": f'userName eq "{person}"'}
    with (
        running_gateway(database_url, log) as url,
        httpx2.Client(base_url=f"{url}/scim/v2", timeout=30) as http,
    ):
        good = bearer(tenant.token)
        assert http.get("/Users", params=lookup, headers=good).status_code == 200
        # A misconfigured client putting its token in the URL.
        assert (
            http.get("/Users", params={"access_token": tenant.token, **lookup}).status_code == 401
        )
        assert http.get("/Groups", params={"token": tenant.token}, headers=good).status_code == 200
        assert http.get("/Nowhere", params=lookup, headers=good).status_code == 404
    text = log.read_text()
    # The route and the status are logged...
    assert '"GET /scim/v2/Users" 200' in text, text
    assert '"GET /scim/v2/Users" 401' in text, text
    assert '"GET /scim/v2/Nowhere" 404' in text, text
    # ...the query is not.
    for secret in ("secret.person", "ex.com", tenant.token, tenant.token[10:], "filter=", "token="):
        assert secret not in text, secret
