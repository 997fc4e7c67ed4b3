"""models/tenant_addresses.py: which tenant a host names, and the tenant's public URLs."""

from __future__ import annotations

import pytest

from gateway.settings import Settings
from gateway.tenancy import parse_host
from models.tenant_addresses import TenantAddresses, scim_endpoint_at
from workers.settings import WorkerSettings

ADDRESSES = TenantAddresses(scheme="https", base_domain="simpleams.co.uk")


@pytest.mark.parametrize(
    ("value", "slug"),
    [
        ("acme.simpleams.co.uk", "acme"),
        ("acme.simpleams.co.uk:8443", "acme"),
        ("ACME.SimpleAMS.co.uk:443", "acme"),
        ("acme.simpleams.co.uk.", "acme"),
        ("acme.simpleams.co.uk.:8000", "acme"),
        ("x.acme.simpleams.co.uk", None),
        ("simpleams.co.uk", None),
        ("acme.simpleams.co.uk.evil.example", None),
        ("acme.example.com", None),
        ("acmesimpleams.co.uk", None),
        ("localhost", None),
        ("localhost:8000", None),
        ("10.0.0.5:8000", None),
        ("[::1]:8000", None),
        ("", None),
    ],
)
def test_the_tenant_a_host_names(value: str, slug: str | None) -> None:
    assert ADDRESSES.slug_of(parse_host(value)) == slug


@pytest.mark.parametrize(
    ("value", "acme", "globex"),
    [
        ("acme.simpleams.co.uk", True, False),
        ("ACME.simpleams.co.uk.:443", True, False),
        # A deeper name under the base domain is no tenant's host.
        ("x.acme.simpleams.co.uk", False, False),
        ("acme.globex.simpleams.co.uk", False, False),
        # Hosts outside the base domain leave it to the token or session.
        ("simpleams.co.uk", True, True),
        ("localhost:8000", True, True),
        ("10.0.0.5", True, True),
        ("acme.example.com", True, True),
        ("", True, True),
    ],
)
def test_which_tenants_a_host_serves(value: str, acme: bool, globex: bool) -> None:
    host = parse_host(value)
    assert (ADDRESSES.serves(host, "acme"), ADDRESSES.serves(host, "globex")) == (acme, globex)


def test_an_ip_address_is_never_a_tenant_host() -> None:
    addresses = TenantAddresses(scheme="https", base_domain="0.5")
    assert addresses.slug_of(parse_host("10.0.0.5")) is None
    assert addresses.serves(parse_host("10.0.0.5"), "acme")


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_tenants_urls_use_the_public_scheme(scheme: str) -> None:
    addresses = TenantAddresses(scheme=scheme, base_domain="simpleams.test")
    assert addresses.host_of("acme") == "acme.simpleams.test"
    assert addresses.scim_endpoint("acme") == f"{scheme}://acme.simpleams.test/scim/v2"
    assert addresses.staff_list("acme") == f"{scheme}://acme.simpleams.test/staff"
    assert addresses.staff_page("acme", 7) == f"{scheme}://acme.simpleams.test/staff/7"
    assert scim_endpoint_at(scheme, "localhost:8000") == f"{scheme}://localhost:8000/scim/v2"


@pytest.mark.parametrize("scheme", [None, "http", "https"])
def test_the_gateway_and_the_workers_read_the_same_address_settings(
    scheme: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"SIMPLEAMS_BASE_DOMAIN": "SimpleAMS.test."}
    if scheme is not None:
        environ["SIMPLEAMS_PUBLIC_SCHEME"] = scheme
    for name in ("SIMPLEAMS_BASE_DOMAIN", "SIMPLEAMS_PUBLIC_SCHEME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    expected = TenantAddresses(scheme=scheme or "https", base_domain="simpleams.test")
    assert Settings.from_env(environ).addresses == expected
    assert WorkerSettings.from_env().addresses == expected
    assert Settings.from_env(environ).endpoint_for("acme") == expected.scim_endpoint("acme")
