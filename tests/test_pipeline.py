"""The pipeline end to end: real dumps into a real database, digests to a real SMTP server.

Nothing is mocked. The four captures in ../shared/dumps are ingested into a SQLite file under
tmp_path (and, in a second run of each test, a fresh PostgreSQL database), subscribers come
from a YAML file written here, and `send_digests` delivers through `make_transport(settings)`
to an aiosmtpd server on loopback (tests/smtpd.py), whose recorded messages are what the
assertions read, next to the ledger rows in the database.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.ingest import ingest_dumps
from newsletter import pipeline
import runs as sending
from newsletter.delivery import make_transport
from newsletter.render import one_line
from newsletter.settings import Settings, load_settings
from newsletter.store import Store
from newsletter.runtime import semantic_model, sender_from
from newsletter.models import Outcome
from newsletter.day import DayReport
from newsletter.subscribers import Subscriber, load_subscribers
from smtp_servers import SmtpServer

FROM_ADDRESS = "digest@news.example"
DAY_ONE = datetime(2026, 4, 16, 7, 0, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)
ADA = "ada@example.org"
TOM = "tom@example.org"
SLEEPY = "sleepy@example.org"

SUBSCRIBERS_YAML = """\
defaults:
  timezone: UTC
  send_at: "07:00"
  max_papers: 5
subscribers:
  - email: ada@example.org
    name: Ada Lovelace
    keywords: [theorem proving, Lean]
  - email: tom@example.org
    name: Thomas Bayes
    keywords: [Bayesian inference]
  - email: sleepy@example.org
    keywords: [theorem proving]
    active: false
  - email: not-an-address
    keywords: [robots]
"""

# Theorem-proving papers known to be in the shared dumps; a good ranking puts some in Ada's digest.
KNOWN_THEOREM_PROVING_TITLES = {
    "LeanDojo: Theorem Proving with Retrieval-Augmented Language Models",
    "PhysProver: Advancing Automatic Theorem Proving for Physics",
    "DeepSeek-Prover: Advancing Theorem Proving in LLMs through Large-Scale Synthetic Data",
    "Alchemy: Amplifying Theorem-Proving Capability through Symbolic Mutation",
    "BrokenMath: A Benchmark for Sycophancy in Theorem Proving with LLMs",
    "Neural Theorem Proving: Generating and Structuring Proofs for Formal Verification",
    "Lyra: Orchestrating Dual Correction in Automated Theorem Proving",
}
KNOWN_BAYESIAN_TITLES = {
    "Transformers Can Do Bayesian Inference",
    "Denotational validation of higher-order Bayesian inference",
}
ON_TOPIC = re.compile(r"theorem[- ]prov|\blean", re.IGNORECASE)

# A small capture in the HF text format, with three invented theorem-proving papers.
NEW_DUMP_NAME = "daily_papers_2026-04-17.txt"
NEW_DUMP = """\
new

Get trending papers in your email inbox!

Subscribe

Daily Papers

byAK and the research community

Apr 17

Tactic Gardens: Growing Lean 4 Proofs from Failed Attempts

We study theorem proving in Lean 4 by keeping every failed tactic attempt and growing new proofs from them; on miniF2F the resulting prover closes more goals than beam search at equal cost.

  • 4 authors
·
Apr 16 12

Counting Lemmas: How Many Facts Does a Theorem Proving Agent Need?

We measure how the size of the premise library changes automated theorem proving in Lean and find that a small, well-chosen library beats the whole of Mathlib for most competition problems.

  • 2 authors
·
Apr 15 7

Proof Sketches as Plans for Neural Theorem Proving

A language model writes an informal proof sketch, a planner turns it into Lean subgoals, and a small prover fills them in; theorem proving success rises on three benchmarks.

  • 6 authors
·
Apr 16 3
"""
NEW_TITLES = {
    "Tactic Gardens: Growing Lean 4 Proofs from Failed Attempts",
    "Counting Lemmas: How Many Facts Does a Theorem Proving Agent Need?",
    "Proof Sketches as Plans for Neural Theorem Proving",
}


# fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def store(database_url: str):
    """The store on SQLite, then on PostgreSQL: the ledger must behave the same on both."""
    store = Store(database_url)
    yield store
    store.close()


@pytest.fixture
def ingested(store: Store, shared_dumps: Path) -> Store:
    report = ingest_dumps(store, shared_dumps)
    assert report.files == 4 and not report.rejected
    return store


@pytest.fixture
def subscribers(tmp_path: Path) -> list[Subscriber]:
    path = tmp_path / "subscribers.yaml"
    path.write_text(SUBSCRIBERS_YAML, encoding="utf-8")
    loaded = load_subscribers(path, max_papers=10, send_at="07:00", timezone="UTC")
    [problem] = loaded.problems  # the invalid entry is reported and left out, the rest go on
    assert "not-an-address" in str(problem) and "email" in str(problem)
    assert [s.email for s in loaded.subscribers] == [ADA, TOM, SLEEPY]
    return list(loaded.subscribers)


@pytest.fixture
def settings(smtp: SmtpServer) -> Settings:
    return load_settings(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        smtp_timeout=5.0,
        from_address=FROM_ADDRESS,
        unsubscribe_url="https://news.example/unsubscribe",
        unsubscribe_secret="pipeline-test-secret-0123456789",
    )


def send(store: Store, subscribers: list[Subscriber], settings: Settings, now: datetime) -> dict[str, Outcome]:
    """One run, as the CLI does it: a fresh transport, one outcome per subscriber."""
    outcomes = sending.send_digests(store, subscribers, settings, make_transport(settings), now=now).outcomes
    assert len(outcomes) == len(subscribers)
    return {outcome.subscriber: outcome for outcome in outcomes}


def received_by(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [r.message for r in smtp.handler.to(address)]


def subject_of(message: EmailMessage) -> str:
    # A subject that fits on one line by itself is folded right after "Subject:" by the
    # email package, and its own parser then keeps the folding space (mail clients trim it).
    return str(message["Subject"]).strip()


def text_of(message: EmailMessage) -> str:
    content = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return content.replace("\r\n", "\n")


def shown_text(message: EmailMessage) -> str:
    """The plain part with its line wrapping undone (long titles are wrapped there)."""
    return " ".join(text_of(message).split())


def shown_html(message: EmailMessage) -> str:
    """The HTML part's text: tags dropped (keyword highlights split titles), then unescaped."""
    content = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return html.unescape(re.sub(r"<[^>]*>", "", content))


def picked_titles(store: Store, address: str, now: datetime) -> list[str]:
    record = store.digest_for(address, now.date())
    assert record is not None
    return [one_line(p.title) for p in store.papers_by_ids(record.paper_ids)]


def ledger_row(store: Store, address: str, now: datetime) -> dict[str, object]:
    [row] = [r for r in store.ledger() if r["subscriber"] == address and r["digest_day"] == now.date()]
    return row


# ingest ------------------------------------------------------------------------------------
def test_ingesting_unchanged_dumps_again_ingests_nothing(store: Store, shared_dumps: Path) -> None:
    first = ingest_dumps(store, shared_dumps)
    papers = store.paper_count()

    again = ingest_dumps(store, shared_dumps)

    assert first.files == 4 and len(first.ingested) == 4 and first.new_papers == papers > 100
    assert (again.files, again.unchanged, again.ingested, again.new_papers) == (4, 4, [], 0)
    assert store.paper_count() == papers


# send --------------------------------------------------------------------------------------
def test_each_active_subscriber_gets_one_relevant_digest(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer
) -> None:
    outcomes = send(ingested, subscribers, settings, DAY_ONE)

    assert outcomes[ADA].status == outcomes[TOM].status == "sent"
    assert (outcomes[SLEEPY].status, outcomes[SLEEPY].detail) == ("skipped", "inactive (active: false)")
    assert len(smtp.handler.received) == 2
    assert received_by(smtp, SLEEPY) == []

    for address, known in ((ADA, KNOWN_THEOREM_PROVING_TITLES), (TOM, KNOWN_BAYESIAN_TITLES)):
        [message] = received_by(smtp, address)
        titles = picked_titles(ingested, address, DAY_ONE)
        assert message["To"].addresses[0].addr_spec == address
        assert message["From"].addresses[0].addr_spec == FROM_ADDRESS
        assert subject_of(message).startswith(f"{len(titles)} paper")
        assert outcomes[address].papers == len(titles) and outcomes[address].subject == subject_of(message)
        assert set(titles) & known, f"{address} got none of the papers it should: {titles}"
        for title in titles:  # what the ledger says was sent is what arrived, in both parts
            assert title in shown_text(message) and title in shown_html(message)
        row = ledger_row(ingested, address, DAY_ONE)
        assert (row["status"], row["message_id"], row["error_code"]) == ("sent", message["Message-ID"], None)
        assert row["attempts"] == 1 and row["paper_count"] == len(titles)

    ada_titles = picked_titles(ingested, ADA, DAY_ONE)
    assert len(ada_titles) == 5  # max_papers from the file's defaults: the dumps hold more
    ada_papers = ingested.papers_by_ids(ingested.digest_for(ADA, DAY_ONE.date()).paper_ids)  # type: ignore[union-attr]
    assert all(ON_TOPIC.search(f"{p.title} {p.abstract}") for p in ada_papers)


def test_a_second_run_the_same_day_sends_nothing_new(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer
) -> None:
    send(ingested, subscribers, settings, DAY_ONE)
    ledger = ingested.ledger()

    again = send(ingested, subscribers, settings, DAY_ONE + timedelta(hours=3))

    assert len(smtp.handler.received) == 2
    for address in (ADA, TOM):
        assert (again[address].status, again[address].detail) == ("skipped", "already sent today")
    assert ingested.ledger() == ledger


def test_the_next_day_brings_only_new_papers(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    send(ingested, subscribers, settings, DAY_ONE)
    [first] = received_by(smtp, ADA)
    first_titles = picked_titles(ingested, ADA, DAY_ONE)

    # no new dump: nothing to say
    quiet = send(ingested, subscribers, settings, DAY_TWO)
    assert len(smtp.handler.received) == 2
    assert all(quiet[a].status == "skipped" and "no new papers" in quiet[a].detail for a in (ADA, TOM))
    assert ingested.digest_for(ADA, DAY_TWO.date()) is None

    # a new capture arrives
    new_dumps = tmp_path / "new-dumps"
    new_dumps.mkdir()
    (new_dumps / NEW_DUMP_NAME).write_text(NEW_DUMP, encoding="utf-8")
    report = ingest_dumps(ingested, new_dumps)
    assert (report.new_papers, report.rejected, report.warnings) == (3, [], [])

    outcomes = send(ingested, subscribers, settings, DAY_TWO)

    assert outcomes[ADA].status == "sent"
    assert outcomes[TOM].status == "skipped"  # three theorem-proving papers: nothing for Tom
    assert len(smtp.handler.received) == 3
    [_, second] = received_by(smtp, ADA)
    second_titles = picked_titles(ingested, ADA, DAY_TWO)
    assert set(second_titles) == NEW_TITLES
    assert subject_of(second).startswith("3 papers")
    assert second["Message-ID"] != first["Message-ID"]
    for title in NEW_TITLES:
        assert title in shown_text(second)
    for title in first_titles:  # never a paper twice
        assert title not in shown_text(second) and title not in shown_html(second)
    assert not set(ingested.digest_for(ADA, DAY_ONE.date()).paper_ids) & set(  # type: ignore[union-attr]
        ingested.digest_for(ADA, DAY_TWO.date()).paper_ids  # type: ignore[union-attr]
    )


def test_a_refused_recipient_fails_alone_and_is_retried_next_run(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer
) -> None:
    smtp.handler.refuse.add(ADA)

    outcomes = send(ingested, subscribers, settings, DAY_ONE)

    assert outcomes[ADA].status == "failed" and "550" in outcomes[ADA].detail
    assert outcomes[TOM].status == "sent"
    assert [r.rcpt_tos for r in smtp.handler.received] == [(TOM,)]
    failed = ledger_row(ingested, ADA, DAY_ONE)
    assert (failed["status"], failed["error_code"], failed["attempts"]) == ("failed", 550, 1)
    assert ADA in str(failed["error"])
    planned = ingested.digest_for(ADA, DAY_ONE.date())

    smtp.handler.refuse.clear()  # the mailbox is back
    retry = send(ingested, subscribers, settings, DAY_ONE + timedelta(hours=1))

    assert retry[ADA].status == "sent"
    assert (retry[TOM].status, retry[TOM].detail) == ("skipped", "already sent today")
    [message] = received_by(smtp, ADA)
    assert len(smtp.handler.received) == 2
    row = ledger_row(ingested, ADA, DAY_ONE)
    assert (row["status"], row["error_code"], row["attempts"]) == ("sent", None, 2)
    assert message["Message-ID"] == row["message_id"] == planned.message_id  # type: ignore[union-attr]
    assert ingested.digest_for(ADA, DAY_ONE.date()).paper_ids == planned.paper_ids  # type: ignore[union-attr]
    for title in picked_titles(ingested, ADA, DAY_ONE):  # the very digest planned before
        assert title in shown_text(message)


def test_papers_of_a_digest_refused_yesterday_are_offered_again_today(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer
) -> None:
    smtp.handler.refuse.add(ADA)
    send(ingested, subscribers, settings, DAY_ONE)
    refused = ingested.digest_for(ADA, DAY_ONE.date())
    assert refused is not None and refused.status == "failed" and refused.paper_ids

    smtp.handler.refuse.clear()
    outcomes = send(ingested, subscribers, settings, DAY_TWO)

    assert outcomes[ADA].status == "sent"
    today = ingested.digest_for(ADA, DAY_TWO.date())
    assert today is not None and today.paper_ids[: len(refused.paper_ids)] == refused.paper_ids
    abandoned = ingested.digest_for(ADA, DAY_ONE.date())
    assert abandoned is not None and (abandoned.status, abandoned.paper_ids) == ("abandoned", ())
    assert len(received_by(smtp, ADA)) == 1


# preview -----------------------------------------------------------------------------------
def test_preview_writes_files_and_touches_nothing(
    ingested: Store, subscribers: list[Subscriber], settings: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    out_dir = tmp_path / "preview"

    outcomes = pipeline.preview(
        ingested, subscribers, sender_from(settings), out_dir, now=DAY_ONE, semantic_model=semantic_model(settings)
    )

    assert [(o.subscriber, o.status) for o in outcomes] == [
        (ADA, "previewed"), (TOM, "previewed"), (SLEEPY, "skipped")
    ]
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted(
        f"2026-04-16_{address}{suffix}" for address in (ADA, TOM) for suffix in (".html", ".txt", ".eml")
    )
    eml = email.message_from_bytes(
        (out_dir / f"2026-04-16_{ADA}.eml").read_bytes(), policy=email.policy.default
    )
    assert eml["To"].addresses[0].addr_spec == ADA
    assert subject_of(eml) == outcomes[0].subject
    assert "<html" in (out_dir / f"2026-04-16_{ADA}.html").read_text(encoding="utf-8").lower()
    assert (out_dir / f"2026-04-16_{ADA}.txt").read_text(encoding="utf-8") == text_of(eml)
    assert ingested.ledger() == []
    assert smtp.handler.received == [] and smtp.handler.connections == 0

    # a dry run changes nothing: the real run afterwards sends the same digest
    sent = send(ingested, subscribers, settings, DAY_ONE)
    assert sent[ADA].status == "sent" and sent[ADA].subject == outcomes[0].subject

