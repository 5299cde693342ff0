"""The day benchmark: N subscribers with diverse interests, 500 papers, end to end into a sink.

    python bench/day.py [--subscribers 100000] [--sizes 10000,100000] [--connections 4]
                        [--papers 500] [--json bench/.cache/day.json] [--stages-only]

What it measures, on this machine, in one run, and prints as one table (also written as JSON):

- ingest: `newsletter ingest` of one HF API JSON dump of `--papers` papers (real titles and
  abstract sentences from ../shared/dumps recombined, as in bench/ranking.py), papers/s;
- rank: planning everyone with the spine's planner (`Planner.plan`, the batch ranker over one
  snapshot), subscribers/s, in this process;
- render + compose: digests/s for the planned digests (cards cached per process, MIME bytes
  from prebuilt parts), and DKIM signing per message with a 2048-bit key, measured apart;
- end to end: the real `newsletter send` in a child process into Postfix's `smtp-sink` (another
  process), papers already ingested: wall time, messages/s, the send process's own peak RSS
  (its VmHWM), the peak of its largest descendant (a pool worker; in the hybrid mode also the
  short-lived process that embeds new keywords) and the peak of its whole process tree, as
  summed RSS and as summed PSS (pages the workers share with the forkserver counted once);
- the wire: Postfix's `smtp-source` putting a message of the same size into the same sink over
  the same number of sessions, messages/s, and the ratio of the two.

Subscribers hold 1 to 6 keywords drawn from a vocabulary of about 200 topics (almost every
profile differs); one in ten excludes a keyword. Run from the repository root with the project
installed (`.venv/bin/python bench/day.py`). Needs Debian's postfix (smtp-sink, smtp-source).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from ranking import VOCABULARY, papers_from_dumps  # noqa: E402

EXTRA_TOPICS = (
    "agentic workflows", "web agents", "GUI agents", "code agents", "multi-agent systems",
    "AI for science", "physics-informed neural networks", "PDE solvers", "climate", "genomics",
    "single-cell", "medical imaging", "radiology", "autonomous driving", "motion planning",
    "reward hacking", "process reward models", "GRPO", "PPO", "verifiable rewards",
    "self-improvement", "self-play", "curriculum learning", "data selection", "data mixing",
    "tokenizer", "byte-level models", "linear attention", "sparse attention", "long-context retrieval",
    "memory", "episodic memory", "continual pretraining", "model merging", "weight averaging",
    "model editing", "unlearning", "watermarking", "membership inference", "adversarial robustness",
    "out-of-distribution detection", "domain adaptation", "few-shot learning", "zero-shot",
    "prompt engineering", "in-context learning", "instruction following", "role-play",
    "persuasion", "social simulation", "computational social science", "legal", "finance",
    "question answering", "summarization", "information extraction", "knowledge graphs",
    "semantic parsing", "text-to-SQL", "spreadsheets", "tables", "documents", "OCR",
    "video understanding", "temporal reasoning", "spatial reasoning", "geometry", "math word problems",
    "olympiad", "proof assistants", "Coq", "Isabelle", "SMT", "program verification",
    "compilers", "GPU kernels", "CUDA", "distributed training", "pipeline parallelism",
    "mixed precision", "FP8", "low-rank adaptation", "adapters", "prefix tuning", "RLAIF",
    "constitutional AI", "value alignment", "moral reasoning", "fairness", "bias",
)
TOPICS = tuple(dict.fromkeys(VOCABULARY + EXTRA_TOPICS))
MESSAGE_BYTES_FALLBACK = 40_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        raise SystemExit("Postfix's smtp-sink is needed: apt-get install postfix")
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("smtp-sink did not start")


def write_dump(path: Path, count: int, rng: random.Random) -> None:
    papers = papers_from_dumps(count, rng)
    if papers is None:
        raise SystemExit("../shared/dumps is needed for realistic papers")
    items = []
    for n, paper in enumerate(papers):
        arxiv = paper.arxiv_id or f"2611.{n:05d}"
        items.append({
            "paper": {
                "id": arxiv, "title": paper.title, "summary": paper.abstract,
                "authors": [{"name": f"Author {n % 97}"}], "upvotes": paper.upvotes or rng.randint(0, 80),
                "publishedAt": "2026-11-28T00:00:00.000Z",
            },
            "publishedAt": "2026-11-29T00:00:00.000Z",
        })
    path.write_text(json.dumps(items), encoding="utf-8")


def write_subscribers(path: Path, count: int, rng: random.Random) -> None:
    lines = ["defaults:", "  max_papers: 10", "subscribers:"]
    for n in range(count):
        keywords = rng.sample(TOPICS, rng.randint(1, 6))
        lines.append(f"  - email: reader{n:06d}@example.org")
        lines.append("    keywords: [" + ", ".join(json.dumps(k) for k in keywords) + "]")
        if rng.random() < 0.1:
            lines.append(f"    exclude: [{json.dumps(rng.choice(TOPICS))}]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """The process's proportional set size: its private pages plus its share of the pages it
    shares (the forkserver's imports with the workers it forked), so a tree's sum counts each
    page once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def run_child(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float, dict[str, int]]:
    """Run and time a command; (result, seconds, peaks in KiB): `own`, the process itself (its
    VmHWM); `descendant`, its largest descendant (a pool worker, the forkserver, the embedding
    process); `tree`, the sum of RSS over its whole tree; `tree_pss`, the sum of PSS over it
    (shared pages counted once). Sampled every 0.2 s from /proc."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"own": 0, "descendant": 0, "tree": 0, "tree_pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks["own"] = max(peaks["own"], _status_kib(process.pid, "VmHWM:"))
            tree = _descendants(process.pid)
            rss = [_status_kib(child, "VmRSS:") for child in tree]
            peaks["descendant"] = max([peaks["descendant"], *rss])
            peaks["tree"] = max(peaks["tree"], _status_kib(process.pid, "VmRSS:") + sum(rss))
            peaks["tree_pss"] = max(peaks["tree_pss"], sum(_pss_kib(pid) for pid in [process.pid, *tree]))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return result, elapsed, peaks


def smtp_source_rate(port: int, message: Path, count: int, sessions: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    subprocess.run(
        [source, "-s", str(sessions), "-m", str(count), "-F", str(message), "-f", "digest@news.example",
         "-t", "reader@example.org", f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


def stage_figures(work: Path, env: dict[str, str], count: int) -> dict[str, float]:
    """Rank and render+compose rates in this process, over the same store and subscribers."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    cwd = os.getcwd()
    os.chdir(work)
    try:
        from newsletter.composing import compose
        from newsletter.preparing import PrepareSetup, make_planner
        from newsletter.planning import Retry, local_day
        from newsletter.runtime import Runtime
        from newsletter.settings import load_settings
        from newsletter.signing import DkimKey, sign_bytes

        runtime = Runtime(load_settings())
        subscribers = list(runtime.subscribers().subscribers)[:count]
        now = datetime.now(UTC)
        setup = PrepareSetup(runtime.store.url, (local_day(subscribers[0], now),), runtime.sender, now, Retry())
        started = time.perf_counter()
        planner = make_planner(setup, runtime.store)
        plans = [plan for _, plan in planner.plan(subscribers)]
        rank_seconds = time.perf_counter() - started
        sendable = [plan for plan in plans if plan.sendable]
        started = time.perf_counter()
        sizes = []
        for plan in sendable:
            _, composed = compose(plan, runtime.sender, now)
            sizes.append(len(composed.data))
        compose_seconds = time.perf_counter() - started
        # DKIM with a 2048-bit key, on the same messages.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        key = DkimKey("bench", "news.example", pem)
        _, composed = compose(sendable[0], runtime.sender, now)
        started = time.perf_counter()
        for _ in range(200):
            sign_bytes(composed.data, key)
        dkim_ms = (time.perf_counter() - started) / 200 * 1000
        return {
            "rank_subscribers_per_s": len(subscribers) / rank_seconds,
            "rank_seconds": rank_seconds,
            "render_compose_per_s": len(sendable) / compose_seconds,
            "render_compose_ms": compose_seconds / max(1, len(sendable)) * 1000,
            "dkim_sign_ms": dkim_ms,
            "message_bytes_median": sorted(sizes)[len(sizes) // 2] if sizes else 0,
            "planned_digests": len(sendable),
        }
    finally:
        os.chdir(cwd)


def run_size(count: int, args: argparse.Namespace, rng: random.Random) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-day-") as folder:
        work = Path(folder)
        (work / "dumps").mkdir()
        write_dump(work / "dumps" / "daily-2026-11-29.json", args.papers, rng)
        write_subscribers(work / "subscribers.yaml", count, rng)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(
            NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port), NEWSLETTER_SMTP_SECURITY="none",
            NEWSLETTER_SMTP_CONNECTIONS=str(args.connections), NEWSLETTER_SMTP_MESSAGES_PER_CONNECTION="1000",
            NEWSLETTER_DUMPS_DIR=str(work / "dumps"), NEWSLETTER_FROM_ADDRESS="digest@news.example",
            NEWSLETTER_SEMANTIC_MODEL=args.semantic_model, COLUMNS="120",
        )
        newsletter = [sys.executable, "-m", "newsletter"]
        ingest, ingest_seconds, _ = run_child([*newsletter, "ingest"], work, env)
        if ingest.returncode != 0:
            raise SystemExit(ingest.stderr[-2000:])
        row: dict[str, float] = {"subscribers": count, "papers": args.papers, "ingest_papers_per_s": args.papers / ingest_seconds}
        row.update(stage_figures(work, env, min(count, 10_000)))
        sink = start_sink(port)
        try:
            message = work / "reference.eml"
            size = int(row.get("message_bytes_median") or MESSAGE_BYTES_FALLBACK)
            message.write_text("Subject: reference\n\n" + ("x" * 76 + "\n") * (size // 77), encoding="ascii")
            reference = smtp_source_rate(port, message, min(count, 20_000), args.connections)
            if args.stages_only:
                return row | {"smtp_source_msgs_per_s": reference}
            result, seconds, peaks = run_child([*newsletter, "send"], work, env)
        finally:
            sink.terminate()
            sink.wait()
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
            raise SystemExit(f"newsletter send failed with exit code {result.returncode}")
        with sqlite3.connect(work / "newsletter.db") as db:
            sent = db.execute("select count(*) from digests where status = 'sent'").fetchone()[0]
        row.update(
            sent=sent, send_seconds=seconds, end_to_end_msgs_per_s=sent / seconds,
            peak_rss_mib=peaks["own"] / 1024, peak_worker_rss_mib=peaks["descendant"] / 1024,
            peak_tree_rss_mib=peaks["tree"] / 1024, peak_tree_pss_mib=peaks["tree_pss"] / 1024,
            smtp_source_msgs_per_s=reference, ratio_to_smtp_source=(sent / seconds) / reference,
        )
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default: N/10,N)")
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--semantic-model", default="off", help="'off' (lexical) or a model for the hybrid mode")
    parser.add_argument("--stages-only", action="store_true", help="skip the end-to-end send")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / ".cache" / "day.json")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.subscribers // 10, args.subscribers]
    rows = []
    print(f"machine: {os.cpu_count()} cores; sink: Postfix smtp-sink; {args.connections} connections; "
          f"{args.papers} papers; ranking: {'lexical' if args.semantic_model == 'off' else args.semantic_model}", flush=True)
    header = (f"{'subscribers':>11} {'ingest p/s':>10} {'rank s/s':>9} {'render msg/s':>12} {'DKIM ms':>8} "
              f"{'e2e msg/s':>9} {'wall s':>7} {'RSS MiB':>8} {'worker MiB':>10} {'tree MiB':>8} {'tree PSS':>8} {'source msg/s':>12} {'ratio':>6}")
    print(header, flush=True)
    for count in sizes:
        row = run_size(count, args, random.Random(args.seed))
        rows.append(row)
        print(
            f"{count:>11,} {row['ingest_papers_per_s']:>10.0f} {row['rank_subscribers_per_s']:>9.0f} "
            f"{row['render_compose_per_s']:>12.0f} {row['dkim_sign_ms']:>8.2f} "
            f"{row.get('end_to_end_msgs_per_s', 0):>9.0f} {row.get('send_seconds', 0):>7.1f} "
            f"{row.get('peak_rss_mib', 0):>8.0f} {row.get('peak_worker_rss_mib', 0):>10.0f} {row.get('peak_tree_rss_mib', 0):>8.0f} {row.get('peak_tree_pss_mib', 0):>8.0f} "
            f"{row['smtp_source_msgs_per_s']:>12.0f} {row.get('ratio_to_smtp_source', 0):>6.2f}",
            flush=True,
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine_cores": os.cpu_count(), "rows": rows}, indent=2), encoding="utf-8")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
