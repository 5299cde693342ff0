"""Celery workers sharing the day (newsletter/workers.py), for real: `newsletter worker`
subprocesses on the machine's Redis or RabbitMQ, the store on PostgreSQL, an aiosmtpd sink in
this process. What must hold (README, "Running past one machine"): every digest of the day is
delivered exactly once by two workers; a worker SIGKILLed mid-shard has its shard finished by
another, with at most one duplicate per SMTP connection it had; a task delivered twice sends
nothing twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from brokers import connect_broker
from databases import PostgresServer
from smtp_servers import RecordingHandler, smtp_server

pytestmark = pytest.mark.postgres

CONNECTIONS = 2
SHARD_TIMEOUT = 8  # seconds: Redis hands a dead worker's shard on after this long


def _write_subscribers(path: Path, count: int) -> list[str]:
    emails = [f"reader{n:04d}@example.org" for n in range(count)]
    lines = ["defaults:", "  max_papers: 3", "subscribers:"]
    for email in emails:
        lines += [f"  - email: {email}", "    keywords: [reasoning]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return emails


def _env(port: int, dumps: Path, database_url: str, broker: str, queue: str, shard_size: int) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(
        NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port), NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SMTP_CONNECTIONS=str(CONNECTIONS), NEWSLETTER_FROM_ADDRESS="digest@news.example",
        NEWSLETTER_DUMPS_DIR=str(dumps), NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_BROKER_URL=broker, NEWSLETTER_BROKER_QUEUE=queue,
        NEWSLETTER_SHARD_SIZE=str(shard_size), NEWSLETTER_SHARD_TIMEOUT=str(SHARD_TIMEOUT),
    )
    return environment


@pytest.fixture(params=["redis", pytest.param("rabbitmq")])
def broker(request: pytest.FixtureRequest) -> str:
    return connect_broker(request.param)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    with postgres.database() as url:
        yield url


class Workers:
    """`newsletter worker` subprocesses, each logging to a file under tmp_path."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            log = (self.cwd / f"worker{len(self.processes)}.log").open("wb")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "newsletter", "worker"], cwd=self.cwd, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            ))
        self.wait_ready()

    def logs(self) -> list[str]:
        return [(self.cwd / f"worker{n}.log").read_text(encoding="utf-8", errors="replace")
                for n in range(len(self.processes))]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while not all(" ready." in log for log in self.logs()):
            for process, log in zip(self.processes, self.logs()):
                assert process.poll() is None, f"a worker stopped:\n{log}"
            assert time.monotonic() < deadline, "the workers did not start:\n" + "\n".join(self.logs())
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def workers(cwd: Path, env: dict[str, str], count: int) -> Iterator[Workers]:
    pool = Workers(cwd, env)
    try:
        pool.start(count)
        yield pool
    finally:
        pool.stop()


def _ledger(database_url: str) -> list[tuple[str, str, str | None]]:
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as db:
        rows = db.execute(text("SELECT subscriber, status, claimed_by FROM digests")).all()
    engine.dispose()
    return [(r[0], r[1], r[2]) for r in rows]


def _pid(claimed_by: str | None) -> str:
    return (claimed_by or "").split(":")[1] if claimed_by else ""


def test_two_workers_deliver_a_1000_subscriber_day_exactly_once(
    tmp_path: Path, shared_dumps: Path, pg_url: str, broker: str
) -> None:
    emails = _write_subscribers(tmp_path / "subscribers.yaml", 1000)
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        env = _env(server.port, shared_dumps, pg_url, broker, f"test-{uuid.uuid4().hex}", shard_size=100)
        with workers(tmp_path, env, 2) as pool:
            finished = subprocess.run(
                [sys.executable, "-m", "newsletter", "send"], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120,
            )
            pids = {str(p.pid) for p in pool.processes}
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "1000 digests sent" in finished.stdout
    received = Counter(r.rcpt_tos[0] for r in handler.received)
    assert set(received) == set(emails) and set(received.values()) == {1}
    ledger = _ledger(pg_url)
    assert len(ledger) == 1000 and {status for _, status, _ in ledger} == {"sent"}
    assert {_pid(claimer) for _, _, claimer in ledger} == pids  # both workers took shards


def test_a_worker_killed_mid_shard_has_its_shard_finished_by_another(
    tmp_path: Path, shared_dumps: Path, pg_url: str, broker: str
) -> None:
    emails = _write_subscribers(tmp_path / "subscribers.yaml", 1000)
    shard = 250
    handler = RecordingHandler(delay=0.02)  # slow enough for the kill to land mid-shard
    with smtp_server(handler) as server:
        env = _env(server.port, shared_dumps, pg_url, broker, f"test-{uuid.uuid4().hex}", shard_size=shard)
        with workers(tmp_path, env, 2) as pool:
            sending = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "send"], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            victim = pool.processes[0]
            deadline = time.monotonic() + 60
            while True:  # until the victim is well into a shard: 30 sent, some still to go
                mine = [r for r in _ledger(pg_url) if _pid(r[2]) == str(victim.pid)]
                if sum(status == "sent" for _, status, _ in mine) >= 30:
                    break
                assert sending.poll() is None and time.monotonic() < deadline, "no kill point was reached"
                time.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed_shards = {emails.index(s) // shard for s, _, claimer in _ledger(pg_url) if _pid(claimer) == str(victim.pid)}
            output, _ = sending.communicate(timeout=90)
    assert sending.returncode == 0, output
    received = Counter(r.rcpt_tos[0] for r in handler.received)
    assert set(received) == set(emails)
    assert sum(count - 1 for count in received.values()) <= CONNECTIONS  # the stated window
    ledger = _ledger(pg_url)
    assert {status for _, status, _ in ledger} == {"sent"}
    survivor = str(pool.processes[1].pid)
    finished_by_survivor = {emails.index(s) // shard for s, _, claimer in ledger if _pid(claimer) == survivor}
    assert killed_shards & finished_by_survivor  # the victim's shard was finished by the other


def test_a_task_delivered_twice_sends_nothing_twice(
    tmp_path: Path, shared_dumps: Path, pg_url: str, broker: str
) -> None:
    from newsletter.settings import Settings
    from newsletter.store import Store
    from newsletter import workers as celery_workers  # noqa: I001

    emails = _write_subscribers(tmp_path / "subscribers.yaml", 300)
    queue = f"test-{uuid.uuid4().hex}"
    handler = RecordingHandler(delay=0.01)
    with smtp_server(handler) as server:
        env = _env(server.port, shared_dumps, pg_url, broker, queue, shard_size=300)
        Store(pg_url).close()  # migrated before the workers meet it
        subprocess.run([sys.executable, "-m", "newsletter", "ingest"], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=60)
        with workers(tmp_path, env, 2) as pool:
            settings = Settings(broker_url=broker, broker_queue=queue, shard_timeout=SHARD_TIMEOUT, database_url=pg_url)
            client = celery_workers.configure(settings, Celery(set_as_current=False))  # this test's broker only
            task_id = str(uuid.uuid4())
            now = datetime.now(UTC).isoformat()
            for _ in range(2):  # the same task, delivered twice; both copies' ends are read in the logs
                client.send_task(celery_workers.TASK, args=(emails, now, False), task_id=task_id, ignore_result=True)
            deadline = time.monotonic() + 60
            while sum(log.count(f"send_shard[{task_id}] succeeded") for log in pool.logs()) < 2:
                assert time.monotonic() < deadline, "\n".join(pool.logs())
                time.sleep(0.1)
            logs = pool.logs()
    assert all(f"send_shard[{task_id}] received" in log for log in logs)  # each worker ran a copy
    received = Counter(r.rcpt_tos[0] for r in handler.received)
    assert set(received) == set(emails) and set(received.values()) == {1}
