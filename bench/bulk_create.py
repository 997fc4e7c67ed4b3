"""1,000-operation /Bulk creates against a running gateway, one after another.

python -m bench.bulk_create --url http://127.0.0.1:8806/scim/v2 --token sams_scim_… --bulks 5
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import httpx2

from bench.initial_sync import user_body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--bulks", type=int, default=5)
    parser.add_argument("--operations", type=int, default=1000)
    args = parser.parse_args()
    http = httpx2.Client(
        base_url=args.url,
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/scim+json"},
        timeout=300,
    )
    took = []
    for _ in range(args.bulks):
        run = uuid.uuid4().hex[:6]
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": user_body(n, run)}
                for n in range(args.operations)
            ],
        }
        started = time.perf_counter()
        answer = http.post("/Bulk", json=body)
        took.append(time.perf_counter() - started)
        statuses = {op["status"] for op in answer.json()["Operations"]}
        if answer.status_code != 200 or statuses != {"201"}:
            raise SystemExit(f"bulk answered {answer.status_code}, operations {statuses}")
    print(
        f"{args.bulks} bulks of {args.operations} creates: median {statistics.median(took):.2f} s "
        f"[{min(took):.2f}-{max(took):.2f}] = {args.operations / statistics.median(took):.0f} "
        "users/s"
    )


if __name__ == "__main__":
    main()
