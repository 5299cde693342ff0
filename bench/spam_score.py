"""Score a digest with SpamAssassin, as it would be sent: all headers, DKIM-signed, one-click
unsubscribe. Local rules only (`spamassassin -t -L`): no network, no DNS blocklists.

    .venv/bin/python bench/spam_score.py [--keep DIR]

Ingests the bundled example dumps into a throwaway database, renders the next digest of each
example subscriber through the pipeline (`pipeline.preview`, the same composition as `send`),
signs it with a key made for the run, and prints each message's score and the rules that
fired with their points. Exits 1 if a score reaches THRESHOLD. Needs Debian's `spamassassin`
and `cryptography` (installed with the test extra) for the key.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.ingest import ingest_dumps
from newsletter import pipeline
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.runtime import sender_from
from newsletter.subscribers import load_subscribers

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DUMPS = REPO_ROOT / "examples" / "dumps"
EXAMPLE_SUBSCRIBERS = REPO_ROOT / "subscribers.example.yaml"
THRESHOLD = 1.0
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
FROM_ADDRESS = "digest@papers.example.org"
_STATUS = re.compile(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", re.MULTILINE)
_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s+(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Score:
    points: float
    rules: list[tuple[str, float, str]]  # name, points, description


def score(eml: Path) -> Score:
    """Run `spamassassin -t -L` on one message; its score and the rules that fired."""
    done = subprocess.run(
        ["spamassassin", "-t", "-L"], input=eml.read_bytes(), capture_output=True, check=True,
        timeout=120,
    )
    output = done.stdout.decode("utf-8", "replace")
    status = _STATUS.search(output)
    if status is None:
        raise RuntimeError(f"no X-Spam-Status in spamassassin's output for {eml}")
    details = output[output.rfind("Content analysis details:") :]
    rules = [(name, float(points), text.strip()) for points, name, text in _RULE.findall(details)]
    return Score(float(status.group(1)), rules)


def write_key(directory: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def render_examples(directory: Path) -> list[Path]:
    """The example subscribers' digests as .eml files, through the pipeline."""
    settings = load_settings(
        from_address=FROM_ADDRESS,
        from_name="Research digest",
        unsubscribe_url="https://papers.example.org/unsubscribe",
        unsubscribe_secret="bench-secret-" + "0" * 20,
        dkim_key_file=write_key(directory),
        dkim_selector="digest2026",
    )
    store = Store(f"sqlite:///{directory}/bench.db")
    try:
        ingest_dumps(store, EXAMPLE_DUMPS)
        subscribers = load_subscribers(
            EXAMPLE_SUBSCRIBERS, max_papers=10, send_at="07:00", timezone="UTC"
        ).subscribers
        pipeline.preview(store, list(subscribers), sender_from(settings), directory / "out", now=NOW)
    finally:
        store.close()
    return sorted((directory / "out").glob("*.eml"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="copy the scored .eml files here")
    args = parser.parse_args()
    if shutil.which("spamassassin") is None:
        print("spamassassin is not installed (apt-get install spamassassin)", file=sys.stderr)
        return 2
    worst = float("-inf")
    with tempfile.TemporaryDirectory() as temp:
        messages = render_examples(Path(temp))
        for eml in messages:
            result = score(eml)
            worst = max(worst, result.points)
            print(f"{eml.name}: {result.points:+.1f} points")
            for name, points, text in result.rules:
                print(f"  {points:+5.1f} {name:28} {text}")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(eml, args.keep / eml.name)
    print(f"worst score {worst:+.1f} (must stay below {THRESHOLD})")
    return 0 if worst < THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
