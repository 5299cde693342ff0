"""The workers benchmark: one day sent by 1, 2 and 4 `newsletter worker` processes.

    python bench/workers.py [--subscribers 2000] [--workers 1,2,4] [--delay 0.03]
                            [--connections 4] [--shard-size 250] [--broker redis://127.0.0.1:6379/9]

For each number of workers: a fresh PostgreSQL database (POSTGRES_TEST_URL's server, default
postgres@127.0.0.1:5432), the real dumps of ../shared/dumps ingested, `--subscribers` subscribers
with varied keywords, N worker processes on the Redis (or RabbitMQ) broker, then the real
`newsletter send` that enqueues the shards and waits for them. The sink is aiosmtpd in a process
of its own that waits `--delay` seconds before answering each message, as a remote server does
(tens of milliseconds), so the figure is what the workers' connections achieve, not what a local
sink swallows. Prints messages/s per N and the ratio to one worker.

Run from the repository root with the project installed with the celery extra
(`.venv/bin/python bench/workers.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DUMPS = REPO.parent / "shared" / "dumps"
ADMIN_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TOPICS = [
    "reasoning", "language model", "diffusion", "reinforcement learning", "agents", "retrieval",
    "vision", "benchmark", "alignment", "robotics", "video", "speech", "code generation", "theorem",
    "efficient", "multimodal", "graph", "scaling", "distillation", "mixture of experts",
]


def sink(port: int, delay: float) -> None:
    """An SMTP server that accepts everything after `delay` seconds per message (own process)."""
    from aiosmtpd.controller import Controller

    class Slow:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            await asyncio.sleep(delay)
            return "250 OK"

    controller = Controller(Slow(), hostname="127.0.0.1", port=port)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_subscribers(path: Path, count: int) -> None:
    rng = random.Random(7)
    lines = ["defaults:", "  max_papers: 5", "subscribers:"]
    for n in range(count):
        keywords = ", ".join(rng.sample(TOPICS, rng.randint(1, 4)))
        lines += [f"  - email: reader{n:06d}@example.org", f"    keywords: [{keywords}]", "    send_empty: true"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_once(workers: int, args: argparse.Namespace, port: int) -> tuple[int, float]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"newsletter_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as db:
        db.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = admin.url.set(database=name).render_as_string(hide_password=False)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            cwd = Path(folder)
            write_subscribers(cwd / "subscribers.yaml", args.subscribers)
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
            env.update(
                NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port), NEWSLETTER_SMTP_SECURITY="none",
                NEWSLETTER_SMTP_CONNECTIONS=str(args.connections), NEWSLETTER_FROM_ADDRESS="digest@news.example",
                NEWSLETTER_DUMPS_DIR=str(DUMPS), NEWSLETTER_DATABASE_URL=database_url,
                NEWSLETTER_BROKER_URL=args.broker, NEWSLETTER_BROKER_QUEUE=f"bench-{uuid.uuid4().hex[:8]}",
                NEWSLETTER_SHARD_SIZE=str(args.shard_size), NEWSLETTER_SEMANTIC_MODEL="off",
            )
            subprocess.run([sys.executable, "-m", "newsletter", "ingest"], cwd=cwd, env=env, check=True,
                           capture_output=True)
            logs = [cwd / f"worker{n}.log" for n in range(workers)]
            for log in logs:
                processes.append(subprocess.Popen([sys.executable, "-m", "newsletter", "worker"], cwd=cwd, env=env,
                                                  stdout=log.open("wb"), stderr=subprocess.STDOUT))
            while not all(log.exists() and " ready." in log.read_text(errors="replace") for log in logs):
                time.sleep(0.1)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "newsletter", "send"], cwd=cwd, env=env,
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"send failed:\n{done.stdout}\n{done.stderr}")
            with create_engine(database_url, poolclass=NullPool).connect() as db:
                sent = int(db.execute(text("SELECT count(*) FROM digests WHERE status = 'sent'")).scalar_one())
            return sent, seconds
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        with admin.connect() as db:
            db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--delay", type=float, default=0.03, help="seconds the sink waits per message")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections per worker")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--sink", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        sink(int(args.sink[0]), float(args.sink[1]))
        return
    if not DUMPS.is_dir():
        raise SystemExit(f"the real dumps are not at {DUMPS}")
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--sink", str(port), str(args.delay)])
    time.sleep(1.5)
    try:
        print(f"{args.subscribers} subscribers, shards of {args.shard_size}, {args.connections} SMTP connections "
              f"per worker, sink delay {args.delay * 1000:.0f} ms per message, {os.cpu_count()} cores")
        print(f"{'workers':>7}  {'sent':>6}  {'seconds':>8}  {'msg/s':>7}  {'ratio':>6}")
        base = None
        for count in [int(n) for n in args.workers.split(",")]:
            sent, seconds = run_once(count, args, port)
            rate = sent / seconds
            base = base or rate
            print(f"{count:>7}  {sent:>6}  {seconds:>8.1f}  {rate:>7.1f}  {rate / base:>6.2f}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
