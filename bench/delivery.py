"""Delivery benchmark: N subscribers, end to end, into a local SMTP sink in another process.

    python bench/delivery.py [--subscribers 10000] [--connections 4] [--sizes 1000,10000]

For each size it builds a fresh setup in a temporary folder (the real dumps from ../shared/dumps,
else examples/dumps; a subscribers file with N entries whose keywords vary), starts a sink
(Postfix's `smtp-sink` when installed, else aiosmtpd's Sink, each in its own process) and runs
the real `newsletter send` in a child process. It prints, per size: wall time, the delivery
rate (messages per second over the whole command, ingest and planning included), the digests
the ledger recorded as sent, and the child's peak resident memory. Memory that stays flat
from 1,000 to 10,000 subscribers shows the send streams instead of building every message first.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DUMPS = ROOT.parent / "shared" / "dumps"
KEYWORD_POOL = [
    ["theorem proving", "Lean"], ["test-time compute"], ["mixture of experts"], ["chain of thought"],
    ["speculative decoding", "LLM serving"], ["code generation"], ["scaling laws"],
    ["reinforcement learning", "reward model"], ["mathematical reasoning"], ["in-context learning"],
    ["compositional generalization"], ["diffusion"], ["agents", "tool use"], ["benchmark"],
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(port: int) -> tuple[subprocess.Popen[bytes], str]:
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
    if sink:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        command = [sink, *user, f"127.0.0.1:{port}", "1024"]
        name = "smtp-sink (Postfix)"
    else:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"]
        name = "aiosmtpd Sink"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, name
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the sink ({name}) did not start on port {port}")


def write_subscribers(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = ["defaults:", "  max_papers: 5", "subscribers:"]
    for n in range(count):
        keywords = rng.choice(KEYWORD_POOL)
        lines += [f"  - email: reader{n:05d}@example.org", f"    keywords: [{', '.join(keywords)}]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_once(count: int, connections: int, dumps: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as folder:
        work = Path(folder)
        write_subscribers(work / "subscribers.yaml", count)
        port = free_port()
        sink, sink_name = start_sink(port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(
            NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port),
            NEWSLETTER_SMTP_SECURITY="none", NEWSLETTER_SMTP_CONNECTIONS=str(connections),
            NEWSLETTER_DUMPS_DIR=str(dumps), NEWSLETTER_FROM_ADDRESS="digest@news.example",
            COLUMNS="120",
        )
        try:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "newsletter", "send"], cwd=work, env=env,
                capture_output=True, text=True,
            )
            elapsed = time.perf_counter() - started
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        finally:
            sink.terminate()
            sink.wait()
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
            raise SystemExit(f"newsletter send failed with exit code {result.returncode}")
        with sqlite3.connect(work / "newsletter.db") as db:
            sent = db.execute("select count(*) from digests where status = 'sent'").fetchone()[0]
            papers = db.execute("select count(*) from papers").fetchone()[0]
    if peak_kib < before:
        peak_kib = before  # ru_maxrss of children is a running maximum
    print(
        f"{count:>7,} subscribers  {sent:>7,} sent  {elapsed:7.1f} s  {sent / elapsed:7.0f} msg/s  "
        f"peak RSS {peak_kib / 1024:6.0f} MiB   ({papers} papers, {connections} connections, sink: {sink_name})",
        flush=True,
    )
    return {"count": count, "sent": sent, "seconds": elapsed, "peak_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--sizes", default=None, help="comma-separated sizes, e.g. 1000,10000 (default: N/10,N)")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    dumps = SHARED_DUMPS if SHARED_DUMPS.is_dir() else ROOT / "examples" / "dumps"
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [max(1, args.subscribers // 10), args.subscribers]
    print(f"newsletter send, end to end, dumps from {dumps}; {os.cpu_count()} CPUs")
    # Each size runs in a fresh child; ru_maxrss of children is a maximum over all of them,
    # so sizes run smallest first and each figure is the peak up to and including that run.
    for count in sorted(sizes):
        run_once(count, args.connections, dumps)


if __name__ == "__main__":
    main()
