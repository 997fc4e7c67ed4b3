"""The soak: a user sync from an IdP while faults are injected at random moments.

RELIABILITY.md, "Soak". C IdP clients sync SOAK_USERS users (POST, PUT,
PATCH in Okta's and Entra's shapes, deactivations, re-activations, DELETEs,
re-hires), retrying every operation until it gets a definitive answer, while
a seeded fault injector SIGKILLs the relay and the worker, stops and starts
Redis and restarts PostgreSQL. Everything runs on a private PostgreSQL
cluster and a private Redis, as the Procfile starts it. At the end, with
every process up: the outbox empties, every acknowledged change is present
exactly once with the state the IdP last acknowledged, every side effect ran
exactly once, and no request got a 5xx other than 503.

    SOAK_USERS=10000 SOAK_SEED=1234 .venv/bin/python -m pytest -s tests/integration/test_soak.py

Knobs (environment): SOAK_USERS (default 2000), SOAK_SEED (default random,
printed), SOAK_CLIENTS (16), SOAK_FAULT_GAP ("1.5,4" seconds between faults),
SOAK_SWEEP_AFTER_SECONDS (30), SOAK_DRAIN_TIMEOUT. The summary is printed and
written to ``$TEST_ARTIFACTS_DIR/soak-summary.json`` (else
``test-artifacts/``); on failure the process logs are kept next to it in
``soak-logs/``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from gateway import tenancy
from gateway.cli import migrate
from gateway.settings import Settings
from tests.conftest import make_tenant
from tests.integration.live_server import gateway_process
from tests.integration.pipeline import pipeline_processes, smtp_sink, wait_for
from tests.integration.private_postgres import PrivatePostgres
from tests.integration.soak import (
    Cluster,
    FaultInjector,
    SoakConfig,
    keep_logs,
    log_findings,
    outbox,
    people,
    print_summary,
    run_sync,
    throughput,
    verify,
    write_summary,
)


def test_a_user_sync_under_random_faults_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    config = SoakConfig.from_env()
    print(
        f"\n[soak] seed {config.seed} (rerun with SOAK_SEED={config.seed}), "
        f"{config.users:,} users, {config.clients} clients",
        flush=True,
    )
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    postgres = PrivatePostgres()
    postgres.start()
    passed = False
    try:
        migrate(Settings(database_url=postgres.url))
        setup = create_engine(postgres.url)
        tenant = make_tenant(setup, "acme")
        with setup.begin() as conn:
            # Keep the mass-deprovision guard out of the way: ~10% deactivations are intended.
            tenancy.set_guard(conn, "acme", guard_percent=100, guard_min_users=1_000_000)
            tenancy.set_notify_email(conn, "acme", "it-admins@acme.test")
        setup.dispose()  # a PostgreSQL restart would leave this pool with dead connections

        with (
            smtp_sink() as smtp,
            pipeline_processes(postgres.url, log_dir, smtp) as pipeline,
            gateway_process(postgres.url, log_dir / "gateway.log") as (url, gateway),
        ):
            cluster = Cluster(
                postgres,
                pipeline,
                log_dir,
                {"SIMPLEAMS_SWEEP_AFTER_SECONDS": str(config.sweep_after_seconds)},
            )
            cluster.start("relay")
            cluster.start("worker")

            everyone = people(config)
            started = time.monotonic()
            finish = run_sync(url, tenant.token, config, everyone)
            injector = FaultInjector(
                cluster,
                random.Random(config.seed),  # noqa: S311 - a reproducible fault schedule
                config.fault_gap,
                started,
            )
            injector.start()
            result = finish()
            injector.stop()  # finishes the fault in progress: every process is up again
            faults_seconds = time.monotonic() - started
            assert injector.error is None, f"the fault injector failed: {injector.error!r}"
            assert not cluster.exited_by_themselves(), cluster.exited_by_themselves()
            wait_for(cluster.all_up, "PostgreSQL, Redis, the relay and the worker to be up", 60)

            db = create_engine(postgres.url, pool_pre_ping=True)
            drain_started = time.monotonic()
            drained = True
            try:
                wait_for(
                    lambda: outbox(db) == (0, 0),
                    "the outbox to empty (every event published and settled)",
                    config.drain_timeout,
                )
            except AssertionError:
                drained = False
            drain_seconds = time.monotonic() - drain_started
            still_waiting, still_in_flight = outbox(db)
            verdict = verify(db, result.people)
            db.dispose()
            assert gateway.poll() is None, "the gateway exited during the soak"
            processes_died = cluster.exited_by_themselves()

        stats = result.stats
        findings = log_findings(log_dir)
        summary: dict[str, Any] = {
            "seed": config.seed,
            "users": config.users,
            "clients": config.clients,
            "sweep_after_seconds": config.sweep_after_seconds,
            "sync_s": round(result.seconds, 1),
            "last_fault_done_s": round(faults_seconds, 1),
            "drain_s": round(drain_seconds, 1),
            "total_s": round(time.monotonic() - started, 1),
            "idp": {
                "operations": dict(stats.operations),
                "acknowledged": stats.acknowledged,
                "requests": stats.requests,
                "retries": stats.retries,
                "status_503": stats.status_503,
                "transport_errors": dict(stats.transport_errors),
                "resolved_409": stats.resolved_409,
                "resolved_404": stats.resolved_404,
                "statuses": dict(stats.statuses),
                "acknowledged_per_5s": throughput(stats, started),
                "server_errors": stats.server_errors[:20],
                "server_error_count": len(stats.server_errors),
                "failures": stats.failures[:20],
                "failure_count": len(stats.failures),
                "answer_mismatches": stats.mismatches[:20],
                "answer_mismatch_count": len(stats.mismatches),
                "client_errors": result.errors,
            },
            "faults": dict(injector.counts),
            "faults_during_sync": sum(f["at_s"] < result.seconds for f in injector.timeline),
            "fault_timeline": injector.timeline,
            "outbox_after_drain": {"unpublished": still_waiting, "unsettled": still_in_flight},
            "database": verdict.figures,
            "logs": findings,
            "lost": dict(+verdict.lost),
            "lost_total": sum(verdict.lost.values()),
            "duplicated": dict(+verdict.duplicated),
            "duplicated_total": sum(verdict.duplicated.values()),
            "problems": verdict.problems[:200],
            "problem_count": len(verdict.problems),
        }
        print_summary(summary)
        print(f"[soak] summary written to {write_summary(summary)}", flush=True)

        assert not result.errors, result.errors
        assert not stats.server_errors, f"{len(stats.server_errors)} 5xx (not 503) answers"
        assert not stats.failures, f"{len(stats.failures)} operations failed: {stats.failures[:5]}"
        assert not stats.mismatches, f"answers disagree with the write: {stats.mismatches[:5]}"
        assert not processes_died, processes_died
        assert drained, (
            f"the outbox did not empty in {config.drain_timeout} s: "
            f"{still_waiting} unpublished, {still_in_flight} unsettled"
        )
        assert sum(verdict.lost.values()) == 0, f"lost: {dict(verdict.lost)}"
        assert sum(verdict.duplicated.values()) == 0, f"duplicated: {dict(verdict.duplicated)}"
        assert not verdict.problems, verdict.problems[:20]
        assert findings["gateway_unhandled_errors"] == 0
        assert findings["worker_dead_letters"] == 0
        assert sum(injector.counts.values()) >= 1, "the sync ended before any fault"
        passed = True
    finally:
        if not passed:
            print(f"[soak] logs kept in {keep_logs(log_dir, postgres)}", flush=True)
        postgres.cleanup()
