"""The worker pool (`newsletter.preparing.pool_preparer`): what a big day runs on.

A day of NEWSLETTER_WORKERS > 0 and at least `DayOptions.pool_from` subscribers is planned and
composed in worker processes. These tests lower `pool_from` so a small list takes that path,
and check it against the in-process path on the same data, through a real SMTP server, and
that the workers do not outlive a run that was killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from newsletter.day import run_day
from newsletter.delivery import make_transport
from newsletter.ingest import ingest_dumps
from newsletter.roster import Roster
from newsletter.runtime import day_options, sender_from
from newsletter.store import Store
from newsletter.subscribers import Subscriber
from smtp_servers import RecordingHandler, SmtpServer, smtp_server, smtp_settings

NOW = datetime(2026, 4, 16, 7, 0, tzinfo=UTC)
TOPICS = ("reasoning", "agents", "diffusion", "video", "theorem proving", "RL", "retrieval", "speech")


def _subscribers(count: int) -> list[Subscriber]:
    return [
        Subscriber(
            email=f"reader{n:03d}@example.org", keywords=(TOPICS[n % len(TOPICS)], TOPICS[(n * 3 + 1) % len(TOPICS)]),
            max_papers=3 + n % 5, timezone="UTC", send_at="07:00",
        )
        for n in range(count)
    ]


def _day(store: Store, server: SmtpServer, subscribers: Sequence[Subscriber], workers: int) -> dict[str, bytes]:
    settings = smtp_settings(server, smtp_connections=3)
    options = replace(day_options(settings), workers=workers, pool_from=1)
    report = run_day(store, subscribers, sender_from(settings), make_transport(settings), NOW, options)
    assert report.ok and report.count("sent") == len(subscribers), report.summary()
    return {r.rcpt_tos[0]: r.raw for r in server.handler.received}


def test_the_pool_sends_what_this_process_would_send(tmp_path: Path, shared_dumps: Path) -> None:
    subscribers = _subscribers(40)
    messages = []
    # in this process from a list; in the pool from a roster (the file's entries in a spool,
    # as `newsletter send` passes them: batches go to the workers as blocks of records)
    for name, workers, given in (("inline", 0, subscribers), ("pool", 2, Roster(subscribers))):
        store = Store(f"sqlite:///{tmp_path / name}.db")
        ingest_dumps(store, shared_dumps)
        with smtp_server(RecordingHandler()) as server:
            messages.append(_day(store, server, given, workers))
            assert len(server.handler.received) == len(subscribers)  # each once
        assert {row["status"] for row in store.ledger()} == {"sent"}
        store.close()
    inline, pooled = messages
    assert inline.keys() == pooled.keys() == {s.email for s in subscribers}
    # Same day, same clock, same papers: the very same bytes, Message-ID and Date included
    # (but the MIME boundary, which is random).
    assert all(_unbounded(inline[address]) == _unbounded(pooled[address]) for address in inline)


def _unbounded(raw: bytes) -> bytes:
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    assert boundary is not None
    return raw.replace(boundary.group(1), b"BOUNDARY")


DRIVER = """
import sys
from dataclasses import replace
from newsletter.day import run_day
from newsletter.delivery import make_transport
from newsletter.runtime import day_options, sender_from
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber
settings = load_settings(smtp_host="127.0.0.1", smtp_port=int(sys.argv[1]), smtp_security="none",
                         from_address="digest@news.example")
subscribers = [Subscriber(email=f"r{n}@example.org", keywords=("reasoning",), max_papers=3, timezone="UTC",
                          send_at="07:00") for n in range(400)]
options = replace(day_options(settings), workers=2, pool_from=1)
run_day(Store(sys.argv[2]), subscribers, sender_from(settings), make_transport(settings), None, options)
"""


def _workers_in(folder: Path) -> list[int]:
    """Processes of the multiprocessing forkserver started from `folder` (its workers too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"forkserver" in (entry / "cmdline").read_bytes() and (entry / "cwd").resolve() == folder.resolve():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_the_workers_exit_when_the_run_is_killed(tmp_path: Path, shared_dumps: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    ingest_dumps(store, shared_dumps)
    store.close()
    handler = RecordingHandler(delay=0.02)
    with smtp_server(handler) as server:
        run = subprocess.Popen([sys.executable, "-c", DRIVER, str(server.port), url], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(handler.received) < 20:
            assert run.poll() is None, run.stderr.read().decode() if run.stderr else "the run ended"
            assert time.monotonic() < deadline, "the run sent nothing"
            time.sleep(0.01)
        assert _workers_in(tmp_path), "the run works with a pool"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
    deadline = time.monotonic() + 15
    while _workers_in(tmp_path):
        assert time.monotonic() < deadline, f"workers left behind: {_workers_in(tmp_path)}"
        time.sleep(0.1)
