"""Side-effect lag: how long from a SCIM write's commit to its tasks being published and done.

Starts the Procfile's relay and worker against a fresh database and a running
gateway is NOT needed: writes go through the gateway app in-process. Run with
the relay woken by LISTEN/NOTIFY and with plain polling, and compare.

    python -m bench.relay_lag --writes 300 --mode listen
    python -m bench.relay_lag --writes 300 --mode poll --poll 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from sqlalchemy import create_engine, text

from gateway import tenancy
from gateway.app import create_app
from gateway.cli import migrate
from gateway.settings import Settings
from models.tenants import Plan

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
BENCH_URL = "postgresql+psycopg://root@127.0.0.1:5432/simpleams_relay_bench"


def fresh_database() -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS simpleams_relay_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE simpleams_relay_bench"))
    admin.dispose()
    migrate(Settings(database_url=BENCH_URL))


def start(process: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = {
        "relay": [sys.executable, "-m", "workers.relay"],
        "worker": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "--concurrency=2",
            "--loglevel=INFO",
        ],
    }[process]
    log = (Path(tempfile.gettempdir()) / f"relay-bench-{process}.log").open("wb")
    return subprocess.Popen(  # noqa: S603 - our own fixed commands
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def write(writes: int, pause: float) -> None:
    engine = create_engine(BENCH_URL)
    with engine.begin() as conn:
        tenancy.create_tenant(conn, "lag", "Lag", Plan.business)
        token = tenancy.issue_token(conn, "lag").token
    engine.dispose()
    app = create_app(Settings(database_url=BENCH_URL))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://localhost/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        for n in range(writes):
            body = {
                "userName": f"lag{n}@example.com",
                "emails": [{"value": f"lag{n}@example.com", "primary": True}],
            }
            response = await http.post("/Users", json=body)
            if response.status_code != 201:
                raise RuntimeError(response.text)
            await asyncio.sleep(pause)  # steady real-time traffic, one write at a time
    await app.state.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between writes")
    parser.add_argument("--mode", choices=["listen", "poll"], default="listen")
    parser.add_argument("--poll", type=float, default=1.0, help="relay poll interval, seconds")
    args = parser.parse_args()
    fresh_database()
    env = {
        "DATABASE_URL": BENCH_URL,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "SIMPLEAMS_RELAY_LISTEN": "1" if args.mode == "listen" else "0",
        "SIMPLEAMS_RELAY_POLL_SECONDS": str(args.poll),
    }
    processes = [start("worker", env), start("relay", env)]
    try:
        asyncio.run(write(args.writes, args.pause))
        engine = create_engine(BENCH_URL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(
                    text("SELECT count(*) FROM provisioning_events WHERE settled_at IS NULL")
                ).scalar_one()
            if not left:
                break
            time.sleep(0.2)  # polling the outbox until it drains (with the deadline above)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT extract(epoch FROM published_at - occurred_at) * 1000 AS publish_ms,"
                    " extract(epoch FROM settled_at - occurred_at) * 1000 AS done_ms"
                    " FROM provisioning_events WHERE settled_at IS NOT NULL"
                )
            ).all()
        engine.dispose()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    publish = sorted(float(r.publish_ms) for r in rows)
    done = sorted(float(r.done_ms) for r in rows)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    print(f"mode={args.mode} poll={args.poll}s writes={args.writes} settled={len(rows)}")
    print(
        f"  commit -> published: p50 {statistics.median(publish):7.1f} ms  "
        f"p95 {pct(publish, 95):7.1f}  max {max(publish):7.1f}"
    )
    print(
        f"  commit -> all side effects done: p50 {statistics.median(done):7.1f} ms  "
        f"p95 {pct(done, 95):7.1f}  max {max(done):7.1f}"
    )


if __name__ == "__main__":
    main()
