"""gateway/tenancy.py's Host parsing: the one place a Host header is read."""

from __future__ import annotations

import pytest

from gateway.tenancy import Host, MalformedHost, parse_host, request_host


@pytest.mark.parametrize(
    ("value", "name", "port", "ip"),
    [
        ("acme.simpleams.co.uk", "acme.simpleams.co.uk", None, False),
        ("ACME.SimpleAMS.co.uk:443", "acme.simpleams.co.uk", 443, False),
        ("acme.simpleams.co.uk.", "acme.simpleams.co.uk", None, False),
        ("acme.simpleams.co.uk.:8443", "acme.simpleams.co.uk", 8443, False),
        ("localhost", "localhost", None, False),
        ("localhost:8000", "localhost", 8000, False),
        ("web_1", "web_1", None, False),
        ("10.0.0.5:8000", "10.0.0.5", 8000, True),
        ("127.0.0.1", "127.0.0.1", None, True),
        ("[::1]", "::1", None, True),
        ("[::1]:8000", "::1", 8000, True),
        ("[2001:DB8:0:0:0:0:0:1]:443", "2001:db8::1", 443, True),
        ("a" * 63 + ".example", "a" * 63 + ".example", None, False),
        ("x:65535", "x", 65535, False),
    ],
)
def test_well_formed_hosts_are_parsed(value: str, name: str, port: int | None, ip: bool) -> None:
    assert parse_host(value) == Host(name=name, port=port, ip=ip)


@pytest.mark.parametrize(
    "value",
    [
        "localhost:1@evil.example",
        "acme.simpleams.co.uk@evil.example",
        "user:pass@acme.simpleams.co.uk",
        "x.simpleams.co.uk:1:2",
        "x.simpleams.co.uk:",
        "x.simpleams.co.uk:http",
        "x.simpleams.co.uk:0",
        "x.simpleams.co.uk:65536",
        "x.simpleams.co.uk:123456",
        "x.simpleams.co.uk:-1",
        "x.simpleams.co.uk:+80",
        "x.simpleams.co.uk/evil",
        "x.simpleams.co.uk#.evil.example",
        "x.simpleams.co.uk?.evil.example",
        "x.simpleams.co.uk\\evil",
        "x.simpleams.co.uk evil",
        " x.simpleams.co.uk",
        "x.simpleams.co.uk\r\nX-Injected: 1",
        "x..simpleams.co.uk",
        ".simpleams.co.uk",
        "-x.simpleams.co.uk",
        "x-.simpleams.co.uk",
        "a" * 64 + ".example",
        ".".join(["a" * 63] * 4) + ".example",
        "acme.simpleams.co.uk..",
        "ex%61mple.com",
        "éxample.com",
        "1.2.3.4.5",
        "127.1",
        "0x7f.0.0.1",
        "01.2.3.4",
        "256.0.0.1",
        "::1",
        "[::1",
        "::1]",
        "[::1]:",
        "[fe80::1%25eth0]",
        "[10.0.0.5]",
        "[not-an-address]",
        "[::1]x",
        "*",
        ":80",
    ],
)
def test_malformed_hosts_are_refused(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host(value)
    # Every reader of a request's host goes through the same parser.
    with pytest.raises(MalformedHost):
        request_host([(b"host", value.encode())])


def test_the_refusal_says_what_a_host_looks_like_without_echoing_it() -> None:
    with pytest.raises(MalformedHost) as refused:
        parse_host("localhost:1@evil.example")
    assert "port" in str(refused.value) and "IP address" in str(refused.value)
    assert "evil" not in str(refused.value)


def test_no_host_is_not_a_malformed_host() -> None:
    assert parse_host("") is None
    assert request_host([(b"accept", b"*/*")]) is None


def test_the_canonical_form_is_rebuilt_not_echoed() -> None:
    assert parse_host("ACME.simpleams.co.uk.:0443") == Host("acme.simpleams.co.uk", 443, False)
    assert Host("acme.simpleams.co.uk", 443, False).netloc == "acme.simpleams.co.uk:443"
    assert Host("::1", 8000, True).netloc == "[::1]:8000"
    assert Host("10.0.0.5", None, True).netloc == "10.0.0.5"


@pytest.mark.parametrize(
    ("value", "local"),
    [("localhost:8000", True), ("10.0.0.5", True), ("[::1]", True), ("acme.example", False)],
)
def test_local_hosts_are_localhost_and_ip_literals(value: str, local: bool) -> None:
    host = parse_host(value)
    assert host is not None and host.local is local


def test_a_request_with_two_host_headers_is_malformed() -> None:
    headers = [(b"host", b"localhost"), (b"host", b"acme.simpleams.co.uk")]
    with pytest.raises(MalformedHost, match="more than one"):
        request_host(headers)
    assert request_host([(b"host", b"Acme.simpleams.co.uk")]) == Host(
        "acme.simpleams.co.uk", None, False
    )
