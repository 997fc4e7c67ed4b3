"""scim2-tester, the python-scim RFC 7643/7644 compliance checker, against a live gateway.

It reads our discovery endpoints and exercises every attribute we advertise.
The suite fails on any ERROR, CRITICAL or DEVIATION it reports.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.conftest import TenantHandle
from tests.integration.live_server import running_gateway


def test_scim2_tester_reports_no_errors(
    database_url: str, tenant: TenantHandle, tmp_path: Path
) -> None:
    with running_gateway(database_url, tmp_path / "gateway.log") as url:
        http = httpx2.Client(
            base_url=f"{url}/scim/v2",
            headers={"Authorization": f"Bearer {tenant.token}"},
            timeout=30,
        )
        with http:
            results = check_server(SyncSCIMClient(http))

    summary = Counter(result.status.name for result in results)
    print(f"scim2-tester summary: {dict(summary)}")
    failures = [
        f"{result.title}: {result.reason}"
        for result in results
        if result.status in (Status.ERROR, Status.CRITICAL, Status.DEVIATION)
    ]
    print("\n".join(failures))
    assert failures == []
    assert summary["SUCCESS"] >= 100
