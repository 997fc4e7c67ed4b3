"""The soak's moving parts: an IdP that syncs users and retries like a real one,
a fault injector, and the final checks against PostgreSQL.

- ``Cluster``: the private PostgreSQL, the private Redis and the Procfile's
  relay and worker, each of which the injector can take down and bring back.
- ``Idp``: C client threads, each owning a disjoint slice of users and playing
  a per-user plan (create, PUT, PATCH in Okta's or Entra's shape,
  deactivate, reactivate, DELETE, re-hire). Every operation is retried until
  it gets a definitive answer, and only definitive answers are recorded as
  the state the IdP believes in (``Person``).
- ``FaultInjector``: a thread that, at seeded random moments, SIGKILLs the
  relay or the worker (its whole process tree), stops and starts Redis, or
  restarts PostgreSQL.
- ``verify``: every acknowledged change present exactly once, every side
  effect exactly once, nothing stuck in the outbox; returns the problems.

The only sleeps here are the injector's random pauses and downtimes and the
clients' retry backoff; everything else waits on a condition (``wait_for``)
or on a process exiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import Engine

from models.outbox import EFFECTS, EventKind
from tests.db import rows, scalar
from tests.integration.pipeline import Pipeline, Process, procfile_process, wait_for
from tests.integration.private_postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

OKTA_AGENT = "Okta SCIM Client 1.0.0"
ENTRA_AGENT = "Microsoft Azure AD Provisioning (soak)"

GIVEN = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
DEPARTMENTS = ["Engineering", "Sales", "Finance", "Legal", "Support", "Marketing", "Operations"]
TITLES = ["Engineer", "Manager", "Analyst", "Director", "Associate", "Lead", "Consultant"]

FAULTS = ("relay_sigkill", "worker_sigkill", "redis_restart", "postgres_restart")


def artifacts_root() -> Path:
    return Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "test-artifacts")


@dataclass(frozen=True)
class SoakConfig:
    seed: int
    users: int
    clients: int
    fault_gap: tuple[float, float]  # seconds between two faults
    sweep_after_seconds: int
    drain_timeout: float
    operation_deadline: float  # an operation without a definitive answer by then fails

    @classmethod
    def from_env(cls) -> SoakConfig:
        env = os.environ
        users = int(env.get("SOAK_USERS", "2000"))
        low, _, high = env.get("SOAK_FAULT_GAP", "1.5,4").partition(",")
        return cls(
            seed=int(env["SOAK_SEED"])
            if env.get("SOAK_SEED")
            else random.SystemRandom().randrange(1, 2**31),
            users=users,
            clients=int(env.get("SOAK_CLIENTS", "16")),
            fault_gap=(float(low), float(high or low)),
            # Not 5: during the sync the workers fall behind the gateway, and a
            # sweep shorter than the queue's wait re-publishes the backlog again
            # and again (measured at 1,500 users, 5 s: events published up to
            # 11 times, drain 65 s instead of 49 s).
            sweep_after_seconds=int(env.get("SOAK_SWEEP_AFTER_SECONDS", "30")),
            drain_timeout=float(env.get("SOAK_DRAIN_TIMEOUT", max(180.0, users * 0.06))),
            operation_deadline=float(env.get("SOAK_OPERATION_DEADLINE", "120")),
        )


# --- processes ----------------------------------------------------------------


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(pid: int) -> list[int]:
    """The process and every descendant (Celery's pool children), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children[parent].append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def is_gone(pid: int) -> bool:
    """Exited (or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Cluster:
    """The restartable part of the deployment: PostgreSQL, Redis, relay, worker.

    Each relay or worker generation logs to its own directory, so a kill does
    not truncate the log of the process it replaced.
    """

    def __init__(
        self, postgres: PrivatePostgres, pipeline: Pipeline, log_dir: Path, env: dict[str, str]
    ) -> None:
        self.postgres = postgres
        self.pipeline = pipeline
        self.log_dir = log_dir
        self.env = env
        self.generations: Counter[str] = Counter()
        self.current: dict[str, Process] = {}
        self.killed: list[Process] = []

    def start(self, name: str) -> Process:
        self.generations[name] += 1
        directory = self.log_dir / f"{name}-{self.generations[name]}"
        directory.mkdir(parents=True, exist_ok=True)
        process = self.pipeline.stack.enter_context(
            procfile_process(name, {**self.pipeline.env, **self.env}, directory)
        )
        self.current[name] = process
        return process

    def sigkill(self, name: str) -> int:
        """SIGKILL the process and all its descendants at once; wait until they are gone.

        Procfile lines run as ``/bin/sh -c "exec …"``, so the Popen is the
        program itself and its children are Celery's pool processes. They
        share the test's process group, so the tree is killed pid by pid.
        """
        process = self.current[name]
        tree = process_tree(process.popen.pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.popen.wait(timeout=30)
        wait_for(lambda: all(map(is_gone, tree)), f"the killed {name}'s processes to exit", 30)
        self.killed.append(process)
        return len(tree)

    def restart_redis(self, down: float) -> None:
        self.pipeline.redis.stop()
        time.sleep(down)  # the fault: Redis stays down this (random) long
        self.pipeline.redis.start()

    def restart_postgres(self, down: float) -> None:
        self.postgres.stop()
        time.sleep(down)  # the fault: PostgreSQL stays down this (random) long
        self.postgres.start()

    def exited_by_themselves(self) -> list[str]:
        """Processes that should be running and are not (nobody killed them)."""
        return [
            f"{name} (generation {self.generations[name]}) exited with {p.popen.returncode}"
            for name, p in self.current.items()
            if p.popen.poll() is not None
        ]

    def all_up(self) -> bool:
        return (
            not self.exited_by_themselves()
            and self.pipeline.redis._answers()
            and self.postgres_answers()
        )

    def postgres_answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={self.postgres.port} user=root dbname=postgres",
                connect_timeout=2,
            ) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False


class FaultInjector(threading.Thread):
    """At random moments, one fault at a time, until told to stop.

    Faults are drawn from a shuffled bag of the four kinds, and ``stop`` lets
    the injector go on until each kind has happened at least once, so even a
    short run proves all four; the seeded RNG makes the schedule reproducible.
    """

    def __init__(
        self, cluster: Cluster, rng: random.Random, gap: tuple[float, float], started: float
    ) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.cluster = cluster
        self.rng = rng
        self.gap = gap
        self.started = started
        self.stopping = threading.Event()
        self.counts: Counter[str] = Counter({fault: 0 for fault in FAULTS})
        self.timeline: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        bag: list[str] = []
        try:
            while True:
                # The random pause between faults is the point of the injector,
                # not a synchronisation. Until each kind has happened, a stop
                # request does not cut it short.
                pause = self.rng.uniform(*self.gap)
                if all(self.counts.values()):
                    if self.stopping.wait(pause):
                        break
                else:
                    time.sleep(pause)
                if not bag:
                    bag = list(FAULTS)
                    self.rng.shuffle(bag)
                fault = bag.pop()
                at = time.monotonic() - self.started
                detail = self.inject(fault)
                self.counts[fault] += 1
                self.timeline.append(
                    {
                        "at_s": round(at, 2),
                        "fault": fault,
                        "took_s": round(time.monotonic() - self.started - at, 2),
                        **detail,
                    }
                )
                print(f"[soak] {at:7.1f} s  fault {fault} {detail}", flush=True)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def inject(self, fault: str) -> dict[str, Any]:
        cluster = self.cluster
        if fault == "relay_sigkill":
            killed = cluster.sigkill("relay")
            cluster.start("relay")
            return {"processes_killed": killed}
        if fault == "worker_sigkill":
            killed = cluster.sigkill("worker")
            cluster.start("worker")
            return {"processes_killed": killed}
        if fault == "redis_restart":
            down = round(self.rng.uniform(1, 5), 2)
            cluster.restart_redis(down)
            return {"down_s": down}
        if fault == "postgres_restart":
            down = round(self.rng.uniform(1, 3), 2)
            cluster.restart_postgres(down)
            return {"down_s": down}
        raise ValueError(fault)

    def stop(self) -> None:
        """Stop after the fault in progress, once every kind has been injected."""
        self.stopping.set()
        self.join(timeout=180)
        if self.is_alive():
            raise AssertionError("the fault injector did not finish in 180 s")


# --- the IdP --------------------------------------------------------------------


@dataclass
class Person:
    """One user as the IdP knows them: what it was last told succeeded."""

    index: int
    user_name: str
    given_name: str
    family_name: str
    department: str
    title: str
    plan: list[str]
    active: bool = True
    deleted: bool = False
    scim_id: str | None = None
    retired_ids: list[str] = field(default_factory=list)
    # The event kinds the acknowledged writes must have produced, in order.
    kinds: list[str] = field(default_factory=list)
    # A request of this person's timed out on the client: it may have run
    # later than its retry, so event order is compared as a multiset.
    timed_out: bool = False
    # An operation got an answer no IdP can act on; its state is unknown.
    abandoned: str | None = None
    step: int = 0
    edits: int = 0

    @property
    def created(self) -> bool:
        return self.scim_id is not None

    def document(self) -> dict[str, Any]:
        return {
            "schemas": [CORE, ENTERPRISE],
            "externalId": f"00u{self.index:07d}",
            "userName": self.user_name,
            "name": {"givenName": self.given_name, "familyName": self.family_name},
            "displayName": f"{self.given_name} {self.family_name}",
            "emails": [{"primary": True, "value": self.user_name, "type": "work"}],
            "title": self.title,
            "active": self.active,
            ENTERPRISE: {"department": self.department, "employeeNumber": str(self.index)},
        }


UPDATES = ("put", "patch")


def plan_for(rng: random.Random) -> list[str]:
    """A per-user sequence, roughly the mix of an initial sync followed by changes."""
    steps = ["create"]
    steps += [rng.choice(UPDATES) for _ in range(rng.choices([0, 1, 2, 3], [35, 40, 20, 5])[0])]
    if rng.random() < 0.10:
        steps.append("deactivate")
        if rng.random() < 0.4:
            steps.append(rng.choice(UPDATES))  # an edit while disabled
        if rng.random() < 0.3:
            steps.append("reactivate")
    if rng.random() < 0.02:
        steps.append("delete")
        if rng.random() < 0.3:
            steps.append("rehire")
    return steps


def people(config: SoakConfig) -> list[Person]:
    result = []
    for index in range(config.users):
        rng = random.Random(f"{config.seed}:{index}")  # noqa: S311 - reproducible test data
        result.append(
            Person(
                index=index,
                user_name=f"user{index:05d}@acme.test",
                given_name=rng.choice(GIVEN),
                family_name=f"{rng.choice(FAMILY)}{index}",
                department=rng.choice(DEPARTMENTS),
                title=rng.choice(TITLES),
                plan=plan_for(rng),
            )
        )
    return result


class Abandoned(Exception):
    """An answer no IdP can act on (a 4xx it did not expect, no answer in time)."""


@dataclass
class IdpStats:
    """Thread-safe tallies of everything the IdP saw."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    operations: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    acknowledged_at: list[float] = field(default_factory=list)  # monotonic times
    requests: int = 0
    retries: int = 0
    status_503: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    resolved_409: int = 0
    resolved_404: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # 5xx other than 503: each one is a failure of the test.
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def note(self, bucket: str, **details: Any) -> None:
        with self.lock:
            getattr(self, bucket).append(details)


def _response_detail(response: httpx2.Response) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "request_id": response.headers.get("x-request-id"),
        "body": response.text[:500],
    }


class IdpClient:
    """One IdP connection (a thread), Okta- or Entra-flavoured."""

    def __init__(
        self,
        number: int,
        base_url: str,
        token: str,
        stats: IdpStats,
        config: SoakConfig,
    ) -> None:
        self.number = number
        self.flavour = "okta" if number % 2 == 0 else "entra"
        self.stats = stats
        self.config = config
        # Choices (whom to act on, new values) follow the seed; retry jitter
        # depends on timing anyway, so it has its own generator.
        self.rng = random.Random(f"{config.seed}:client:{number}")  # noqa: S311
        self.jitter = random.Random()  # noqa: S311
        self.http = httpx2.Client(
            base_url=f"{base_url}/scim/v2",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/scim+json",
                "User-Agent": OKTA_AGENT if self.flavour == "okta" else ENTRA_AGENT,
            },
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    # One request, retried until the answer is definitive.
    def call(
        self, person: Person, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx2.Response, bool]:
        """Send until the answer is anything but a 503, another 5xx or a transport error.

        Returns the answer and whether an earlier attempt may have been
        applied (its answer was lost), which makes a 409 on a POST and a 404
        on a DELETE mean "already done".
        """
        deadline = time.monotonic() + self.config.operation_deadline
        uncertain = False
        attempt = 0
        while True:
            if attempt:
                self.stats.add(retries=1)
            attempt += 1
            if time.monotonic() > deadline:
                raise Abandoned(f"{method} {path}: no definitive answer in {attempt - 1} attempts")
            self.stats.add(requests=1)
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx2.TransportError as exc:
                with self.stats.lock:
                    self.stats.transport_errors[type(exc).__name__] += 1
                if isinstance(exc, httpx2.TimeoutException):
                    person.timed_out = True
                uncertain = True
                # Client retry backoff, as an IdP does.
                time.sleep(min(2.0, 0.2 * 2**attempt) * self.jitter.uniform(0.5, 1))
                continue
            with self.stats.lock:
                self.stats.statuses[str(response.status_code)] += 1
            if response.status_code == 503:
                self.stats.add(status_503=1)
                uncertain = True
                retry_after = float(response.headers.get("retry-after") or 1)
                # Respect Retry-After, capped so the soak keeps moving (client backoff).
                time.sleep(min(retry_after, 1.0) * self.jitter.uniform(0.5, 1))
                continue
            if response.status_code >= 500:
                # Not acceptable, ever; an IdP would still retry it.
                self.stats.note(
                    "server_errors",
                    method=method,
                    path=path,
                    user=person.user_name,
                    **_response_detail(response),
                )
                uncertain = True
                time.sleep(0.5 * self.jitter.uniform(0.5, 1))  # client retry backoff
                continue
            return response, uncertain

    def unexpected(self, person: Person, what: str, response: httpx2.Response) -> Abandoned:
        return Abandoned(f"{what}: unexpected {response.status_code} {response.text[:300]}")

    # The operations. Each records its effect on the Person only once acknowledged.
    def perform(self, person: Person, step: str) -> None:
        getattr(self, f"do_{step}")(person)
        with self.stats.lock:
            self.stats.operations[step] += 1
            self.stats.acknowledged += 1
            self.stats.acknowledged_at.append(time.monotonic())

    def do_create(self, person: Person, kind: str = EventKind.user_created.value) -> None:
        body = person.document()
        while True:
            response, uncertain = self.call(person, "POST", "/Users", json=body)
            if response.status_code == 201:
                scim_id = response.json()["id"]
                self.check_resource(person, "POST answer", response.json())
                break
            if response.status_code == 409 and uncertain:
                # The answer to an earlier attempt was lost: find the user, as IdPs do.
                found = self.lookup(person)
                if found is None:
                    continue  # that attempt was not applied after all: create again
                self.stats.add(resolved_409=1)
                scim_id = found["id"]
                self.check_resource(person, "create (resolved 409)", found)
                break
            raise self.unexpected(person, "POST /Users", response)
        person.scim_id = scim_id
        person.kinds.append(kind)

    def do_rehire(self, person: Person) -> None:
        person.retired_ids.append(person.scim_id or "")
        person.active, person.deleted = True, False
        person.department = self.rng.choice(DEPARTMENTS)
        person.title = f"{self.rng.choice(TITLES)} (rehired)"
        self.do_create(person, EventKind.user_restored.value)

    def lookup(self, person: Person) -> dict[str, Any] | None:
        response, _ = self.call(
            person, "GET", "/Users", params={"filter": f'userName eq "{person.user_name}"'}
        )
        if response.status_code != 200:
            raise self.unexpected(person, "GET /Users?filter", response)
        resources = response.json().get("Resources", [])
        if len(resources) > 1:
            raise Abandoned(f"{len(resources)} live users named {person.user_name}")
        return resources[0] if resources else None

    def do_put(self, person: Person) -> None:
        person.edits += 1
        department = self.rng.choice(DEPARTMENTS)
        title = f"{self.rng.choice(TITLES)} {person.edits}"  # always a change
        body = {**person.document(), "id": person.scim_id, "title": title}
        body[ENTERPRISE] = {**body[ENTERPRISE], "department": department}
        resource = self.write(person, "PUT", body, EventKind.user_updated)
        person.department, person.title = department, title
        self.check_resource(person, "PUT answer", resource)

    def do_patch(self, person: Person) -> None:
        person.edits += 1
        family = f"{self.rng.choice(FAMILY)}{person.index}x{person.edits}"
        department = person.department
        if self.flavour == "okta":
            operations = [{"op": "replace", "value": {"name.familyName": family}}]
        else:
            department = self.rng.choice(DEPARTMENTS)
            operations = [
                {"op": "Replace", "path": "name.familyName", "value": family},
                {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": department},
            ]
        resource = self.write(
            person,
            "PATCH",
            {"schemas": [PATCH_OP], "Operations": operations},
            EventKind.user_updated,
        )
        person.family_name, person.department = family, department
        self.check_resource(person, "PATCH answer", resource)

    def do_deactivate(self, person: Person) -> None:
        resource = self.write(person, "PATCH", self.active_patch(False), EventKind.user_deactivated)
        person.active = False
        self.check_resource(person, "deactivation answer", resource)

    def do_reactivate(self, person: Person) -> None:
        resource = self.write(person, "PATCH", self.active_patch(True), EventKind.user_reactivated)
        person.active = True
        self.check_resource(person, "reactivation answer", resource)

    def active_patch(self, active: bool) -> dict[str, Any]:
        if self.flavour == "okta":
            operation: dict[str, Any] = {"op": "replace", "value": {"active": active}}
        else:
            operation = {"op": "Replace", "path": "active", "value": str(active)}
        return {"schemas": [PATCH_OP], "Operations": [operation]}

    def write(
        self, person: Person, method: str, body: dict[str, Any], kind: EventKind
    ) -> dict[str, Any]:
        path = f"/Users/{person.scim_id}"
        response, _ = self.call(person, method, path, json=body)
        if response.status_code != 200:
            raise self.unexpected(person, f"{method} {path}", response)
        person.kinds.append(kind.value)
        resource: dict[str, Any] = response.json()
        return resource

    def do_delete(self, person: Person) -> None:
        path = f"/Users/{person.scim_id}"
        response, uncertain = self.call(person, "DELETE", path)
        if response.status_code == 404 and uncertain:
            self.stats.add(resolved_404=1)  # the lost answer's DELETE was applied
        elif response.status_code != 204:
            raise self.unexpected(person, f"DELETE {path}", response)
        person.active, person.deleted = False, True
        person.kinds.append(EventKind.user_deleted.value)

    def check_resource(self, person: Person, what: str, resource: dict[str, Any]) -> None:
        """The gateway's answer must show the state the IdP just set."""
        seen = {
            "familyName": resource.get("name", {}).get("familyName"),
            "department": resource.get(ENTERPRISE, {}).get("department"),
            "title": resource.get("title"),
            "active": resource.get("active"),
        }
        wanted = {
            "familyName": person.family_name,
            "department": person.department,
            "title": person.title,
            "active": person.active,
        }
        if seen != wanted:
            self.stats.note(
                "mismatches", user=person.user_name, what=what, answered=seen, expected=wanted
            )

    def run(self, slice_: list[Person], window: int = 8) -> None:
        """Play the slice's plans, interleaving up to ``window`` people at a time."""
        waiting = list(reversed(slice_))
        active: list[Person] = []
        while waiting or active:
            while waiting and len(active) < window:
                active.append(waiting.pop())
            person = self.rng.choice(active)
            step = person.plan[person.step]
            try:
                self.perform(person, step)
            except Abandoned as exc:
                person.abandoned = f"{step}: {exc}"
                self.stats.note("failures", user=person.user_name, step=step, error=str(exc))
                active.remove(person)
                continue
            person.step += 1
            if person.step == len(person.plan):
                active.remove(person)


@dataclass
class SyncResult:
    people: list[Person]
    stats: IdpStats
    errors: list[str]
    seconds: float


def run_sync(
    base_url: str, token: str, config: SoakConfig, everyone: list[Person]
) -> Callable[[], SyncResult]:
    """Start the clients; returns a function that waits for them and gives the result."""
    stats = IdpStats()
    errors: list[str] = []
    clients = [IdpClient(n, base_url, token, stats, config) for n in range(config.clients)]
    started = time.monotonic()

    def play(client: IdpClient) -> None:
        try:
            client.run(everyone[client.number :: config.clients])
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(f"client {client.number}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [
        threading.Thread(target=play, args=(client,), name=f"idp-{client.number}", daemon=True)
        for client in clients
    ]
    for thread in threads:
        thread.start()

    def finish() -> SyncResult:
        deadline = time.monotonic() + max(600.0, config.users * 0.5)
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
            if thread.is_alive():
                errors.append(f"{thread.name} still running at the deadline")
        return SyncResult(everyone, stats, errors, time.monotonic() - started)

    return finish


def throughput(stats: IdpStats, started: float, bucket: float = 5.0) -> list[int]:
    """Acknowledged writes per ``bucket`` seconds since ``started``."""
    counts: Counter[int] = Counter(int((at - started) // bucket) for at in stats.acknowledged_at)
    return [counts[n] for n in range(max(counts, default=-1) + 1)]


# --- checks ---------------------------------------------------------------------


def outbox(db: Engine) -> tuple[int, int]:
    """(events not yet published, events published but not settled)."""
    row = rows(
        db,
        "SELECT count(*) FILTER (WHERE published_at IS NULL) AS waiting, "
        "count(*) FILTER (WHERE published_at IS NOT NULL AND settled_at IS NULL) AS in_flight "
        "FROM provisioning_events",
    )[0]
    return int(row.waiting), int(row.in_flight)


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    figures: dict[str, Any] = field(default_factory=dict)

    def problem(self, bucket: Counter[str] | None, kind: str, message: str) -> None:
        if bucket is not None:
            bucket[kind] += 1
        self.problems.append(message)


def verify(db: Engine, everyone: list[Person]) -> Verdict:
    verdict = Verdict()
    users_by_name: dict[str, list[Any]] = defaultdict(list)
    for row in rows(
        db,
        "SELECT id, lower(user_name) AS key, scim_id::text AS scim_id, active, "
        "deleted_at IS NOT NULL AS deleted, department, title, family_name, checkout_locked "
        "FROM users",
    ):
        users_by_name[row.key].append(row)
    events_by_user: dict[Any, list[Any]] = defaultdict(list)
    for row in rows(db, "SELECT id, user_id, kind FROM provisioning_events ORDER BY id"):
        events_by_user[row.user_id].append(row)

    known = {person.user_name.lower() for person in everyone}
    for name in sorted(set(users_by_name) - known):
        verdict.problem(verdict.duplicated, "users", f"{name}: a user the IdP never created")
    for person in everyone:
        if person.abandoned or not person.kinds:
            continue  # reported by the IdP; its state is unknown
        found = users_by_name.get(person.user_name.lower(), [])
        if not found:
            verdict.problem(verdict.lost, "users", f"{person.user_name}: acknowledged, missing")
            continue
        if len(found) > 1:
            verdict.problem(
                verdict.duplicated, "users", f"{person.user_name}: {len(found)} rows, expected one"
            )
            continue
        row = found[0]
        state = {
            "active": row.active,
            "deleted": row.deleted,
            "department": row.department,
            "title": row.title,
            "family_name": row.family_name,
        }
        expected = {
            "active": person.active,
            "deleted": person.deleted,
            "department": person.department,
            "title": person.title,
            "family_name": person.family_name,
        }
        if state != expected:
            verdict.problem(
                verdict.lost,
                "user_state",
                f"{person.user_name}: stored {state}, last acknowledged {expected}",
            )
        if not person.deleted and row.scim_id != person.scim_id:
            verdict.problem(
                verdict.lost,
                "user_state",
                f"{person.user_name}: scim id {row.scim_id}, the IdP has {person.scim_id}",
            )
        if row.checkout_locked != (not person.active or person.deleted):
            verdict.problem(
                verdict.lost,
                "checkout_lock",
                f"{person.user_name}: checkout_locked={row.checkout_locked} but "
                f"active={person.active} deleted={person.deleted}",
            )
        kinds = [event.kind for event in events_by_user.pop(row.id, [])]
        same = (
            kinds == person.kinds if not person.timed_out else sorted(kinds) == sorted(person.kinds)
        )
        if not same:
            missing = Counter(person.kinds) - Counter(kinds)
            extra = Counter(kinds) - Counter(person.kinds)
            verdict.lost["events"] += sum(missing.values())
            verdict.duplicated["events"] += sum(extra.values())
            verdict.problems.append(
                f"{person.user_name}: events {kinds}, acknowledged writes {person.kinds}"
            )
    abandoned_ids = {
        row.id
        for person in everyone
        if person.abandoned
        for row in users_by_name.get(person.user_name.lower(), [])
    }
    for user_id, events in events_by_user.items():
        if user_id not in abandoned_ids:
            verdict.problem(
                verdict.duplicated, "events", f"user {user_id}: events {[e.kind for e in events]}"
            )

    # Side effects: exactly one run per routed effect, all done.
    runs: dict[int, list[Any]] = defaultdict(list)
    for row in rows(db, "SELECT event_id, effect, status FROM side_effect_runs"):
        runs[row.event_id].append(row)
    events = rows(db, "SELECT id, kind, publish_count FROM provisioning_events")
    statuses: Counter[str] = Counter()
    for event in events:
        done = runs.pop(event.id, [])
        statuses.update(run.status for run in done)
        wanted = sorted(effect.value for effect in EFFECTS[EventKind(event.kind)])
        got = sorted(run.effect for run in done)
        if got != wanted:
            missing = Counter(wanted) - Counter(got)
            extra = Counter(got) - Counter(wanted)
            verdict.lost["side_effects"] += sum(missing.values())
            verdict.duplicated["side_effects"] += sum(extra.values())
            verdict.problems.append(f"event {event.id} ({event.kind}): runs {got}, want {wanted}")
        for run in done:
            if run.status != "done":
                verdict.problem(
                    verdict.lost,
                    f"side_effects_{run.status}",
                    f"event {event.id} ({event.kind}): {run.effect} is {run.status}",
                )
    for event_id in runs:
        verdict.problem(verdict.duplicated, "side_effects", f"runs for unknown event {event_id}")

    # Audit: one entry per event (event_id is unique, so count the ones missing).
    audit_total = scalar(db, "SELECT count(*) FROM audit_log")
    unaudited = rows(
        db,
        "SELECT e.id, e.kind FROM provisioning_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.event_id = e.id) ORDER BY e.id",
    )
    for event in unaudited:
        verdict.problem(
            verdict.lost, "audit", f"event {event.id} ({event.kind}) has no audit entry"
        )
    if audit_total != len(events):
        verdict.problems.append(f"{audit_total} audit entries for {len(events)} events")
        verdict.duplicated["audit"] += max(0, audit_total - len(events) + len(unaudited))
    wrong_action = scalar(
        db,
        "SELECT count(*) FROM audit_log a JOIN provisioning_events e ON e.id = a.event_id "
        "WHERE a.action <> substr(e.kind, 6) OR a.user_id <> e.user_id",
    )
    if wrong_action:
        verdict.problems.append(f"{wrong_action} audit entries disagree with their event")

    # Notify: the tenant has a notification address and nobody holds assets,
    # so every event becomes exactly one digest item, and no email is due.
    undigested = scalar(
        db,
        "SELECT count(*) FROM provisioning_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM digest_items d WHERE d.event_id = e.id)",
    )
    if undigested:
        verdict.problem(None, "digest", f"{undigested} events without a digest item")
        verdict.lost["digest_items"] += undigested
    notifications = scalar(db, "SELECT count(*) FROM notifications")
    if notifications:
        verdict.problems.append(f"{notifications} notifications, expected none (no assets held)")
    tripped = scalar(db, "SELECT count(*) FROM tenants WHERE guard_tripped_at IS NOT NULL")
    if tripped:
        verdict.problems.append("the mass-deprovision guard tripped; it was set out of the way")

    publish_counts = Counter(event.publish_count for event in events)
    verdict.figures = {
        "users_rows": sum(len(found) for found in users_by_name.values()),
        "events": len(events),
        "events_by_kind": dict(Counter(event.kind for event in events)),
        "side_effect_runs": sum(statuses.values()),
        "side_effect_runs_by_status": dict(statuses),
        "audit_entries": audit_total,
        "digest_items": scalar(db, "SELECT count(*) FROM digest_items"),
        "events_published_more_than_once": sum(
            n for count, n in publish_counts.items() if count > 1
        ),
        "max_publish_count": max(publish_counts, default=0),
    }
    return verdict


# --- logs and the summary -------------------------------------------------------


def log_findings(log_dir: Path) -> dict[str, Any]:
    """Counts of the lines that matter in every process log of the run."""
    patterns = {
        "gateway_unhandled_errors": ("gateway.log", "unhandled error"),
        "gateway_database_unavailable": ("gateway.log", "database unavailable"),
        "worker_dead_letters": ("worker.log", "failed for good"),
        "worker_retries": ("worker.log", "Retry in"),
        "relay_republished": ("relay.log", "re-published"),
        "relay_broker_unavailable": ("relay.log", "broker unavailable"),
        "relay_database_unavailable": ("relay.log", "database unavailable"),
    }
    found: dict[str, Any] = {}
    for name, (log_name, needle) in patterns.items():
        count = 0
        for path in log_dir.rglob(log_name):
            count += path.read_text(errors="replace").count(needle)
        found[name] = count
    return found


def write_summary(summary: dict[str, Any]) -> Path:
    root = artifacts_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / "soak-summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")
    return path


def keep_logs(log_dir: Path, postgres: PrivatePostgres) -> Path:
    import shutil

    target = artifacts_root() / "soak-logs"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(log_dir, target, dirs_exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.copy(postgres.log, target / "postgresql.log")
    return target


def print_summary(summary: dict[str, Any]) -> None:
    idp = summary["idp"]
    lines = [
        "",
        f"=== soak: seed {summary['seed']}, {summary['users']:,} users, "
        f"{summary['clients']} clients ===",
        f"sync {summary['sync_s']} s; last fault over at {summary['last_fault_done_s']} s; "
        f"outbox drained {summary['drain_s']} s later; total {summary['total_s']} s",
        "operations: "
        + ", ".join(f"{kind} {count:,}" for kind, count in sorted(idp["operations"].items())),
        f"acknowledged writes {idp['acknowledged']:,}; requests {idp['requests']:,}; "
        f"retries {idp['retries']:,}; 503s {idp['status_503']:,}; "
        f"transport errors {idp['transport_errors']}; 409s resolved {idp['resolved_409']}; "
        f"404s resolved {idp['resolved_404']}; other 5xx {len(idp['server_errors'])}",
        "faults: "
        + ", ".join(f"{kind} {count}" for kind, count in summary["faults"].items())
        + f" ({summary['faults_during_sync']} during the sync)",
        f"acknowledged per 5 s: {idp['acknowledged_per_5s']}",
        f"database: {summary['database']}",
        f"logs: {summary['logs']}",
        f"lost: {summary['lost_total']} {summary['lost']}; "
        f"duplicated: {summary['duplicated_total']} {summary['duplicated']}",
    ]
    if summary["problems"]:
        lines.append(f"problems ({summary['problem_count']}):")
        lines += [f"  - {problem}" for problem in summary["problems"][:30]]
    print("\n".join(lines), flush=True)
