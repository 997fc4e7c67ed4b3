"""A tenant's address: which tenant a host names, and the tenant's public URLs.

A tenant is served at ``SLUG.<base domain>``, reached with the public scheme
(``SIMPLEAMS_PUBLIC_SCHEME``: https behind TLS, http on a developer's
machine). Every reader asks ``TenantAddresses``: the host binding of SCIM
tokens (gateway/auth.py) and of admin sessions and sign-in (gateway/admin),
the URLs the gateway answers with (gateway/scim/http.py, the SCIM settings
page, ``simpleams scim enable``) and the links in notification emails
(workers/notify.py). It lives in models/ because the gateway and the workers
both import it and never each other; it is standard library only.

Host headers are parsed in one place, gateway/tenancy.py (``parse_host``):
this module reads only what that parser made of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SCIM_PATH = "/scim/v2"
STAFF_PATH = "/staff"


class ParsedHost(Protocol):
    """What this module reads of gateway/tenancy.py's ``Host``."""

    @property
    def name(self) -> str:
        """Lower case, without a trailing dot or a port."""
        ...

    @property
    def ip(self) -> bool:
        """Whether ``name`` is an IP address."""
        ...


def scim_endpoint_at(scheme: str, netloc: str) -> str:
    """The SCIM endpoint on ``netloc`` (a tenant's host, or localhost for a developer)."""
    return f"{scheme}://{netloc}{SCIM_PATH}"


@dataclass(frozen=True)
class TenantAddresses:
    """The tenants' hosts and URLs under one base domain.

    :param scheme: the public scheme, ``https`` or ``http``.
    :param base_domain: lower case, without leading or trailing dots.
    """

    scheme: str
    base_domain: str

    def slug_of(self, host: ParsedHost | None) -> str | None:
        """The tenant ``host`` names (``SLUG.<base domain>``); None for any other host."""
        below = self._below_base_domain(host)
        return below if below is not None and "." not in below else None

    def serves(self, host: ParsedHost | None, slug: str) -> bool:
        """Whether a request to ``host`` may act for the tenant ``slug``.

        On a host under the base domain, only if it is the tenant's own: a
        token or session of one tenant never works on another tenant's host
        (nor on a deeper name, which is no tenant's). Other hosts (none,
        localhost, an IP address, a load balancer's name) leave it to the
        token or the session.
        """
        below = self._below_base_domain(host)
        return below is None or below == slug

    def host_of(self, slug: str) -> str:
        return f"{slug}.{self.base_domain}"

    def scim_endpoint(self, slug: str) -> str:
        """What IdPs are told to call: the Base URL (Okta), the Tenant URL (Entra)."""
        return scim_endpoint_at(self.scheme, self.host_of(slug))

    def staff_list(self, slug: str) -> str:
        return f"{self.scheme}://{self.host_of(slug)}{STAFF_PATH}"

    def staff_page(self, slug: str, user_id: object) -> str:
        return f"{self.staff_list(slug)}/{user_id}"

    def _below_base_domain(self, host: ParsedHost | None) -> str | None:
        """The labels before ``.<base domain>`` (``x.acme`` for x.acme.DOMAIN), or None."""
        suffix = "." + self.base_domain
        if host is None or host.ip or not host.name.endswith(suffix):
            return None
        return host.name[: -len(suffix)]
