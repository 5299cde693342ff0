"""Rendering and composing: both parts, headers, escaping of hostile dump text, packaging."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.message import compose_message, digest_message_id
from newsletter.models import KeywordMatch, Paper, Ranked
from newsletter.render import Recipient, render_digest, trim_abstract

REPO_ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 20)
ADA = Recipient("ada@example.org", "Ada", ("theorem proving", "Lean"))


def _pick(title: str, abstract: str = "We prove things. Then more things.", **extra: object) -> Ranked:
    paper = Paper(title=title, abstract=abstract, **extra)  # type: ignore[arg-type]
    return Ranked(paper, 3.2, (KeywordMatch("theorem proving", ("title", "abstract")),), picked=True)


def _parse(picks: list[Ranked], recipient: Recipient = ADA) -> email.message.EmailMessage:
    rendered = render_digest(recipient=recipient, day=DAY, picks=picks, unsubscribe_link="mailto:u@example.org")
    message = compose_message(
        digest=rendered, to_address=recipient.email, to_name=recipient.name,
        from_address="digest@lab.example.org", from_name="Lab digest",
        message_id=digest_message_id(recipient.email, DAY, "lab.example.org"),
        sent_at=datetime(2026, 11, 20, 6, 0, tzinfo=UTC),
    )
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def test_a_digest_has_both_parts_and_every_header() -> None:
    picks = [
        _pick("Neural Theorem Proving in Lean", author_count=3, upvotes=12, published=date(2026, 11, 18), arxiv_id="2611.01234"),
        _pick("A Second Paper", organization="Acme AI"),
    ]
    parsed = _parse(picks)
    assert parsed["From"] == "Lab digest <digest@lab.example.org>"
    assert parsed["To"] == "Ada <ada@example.org>"
    assert parsed["Subject"] == "2 papers on theorem proving: Neural Theorem Proving in Lean"
    assert parsed["Date"] == "Fri, 20 Nov 2026 06:00:00 +0000"
    assert parsed["Message-ID"] == digest_message_id("ada@example.org", DAY, "lab.example.org")
    assert parsed["Message-ID"].endswith("@lab.example.org>")
    assert parsed["List-Unsubscribe"].startswith("<mailto:digest@lab.example.org?subject=unsubscribe")
    assert parsed["List-Id"] and parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "1. Neural Theorem Proving in Lean" in text
    assert "https://huggingface.co/papers/2611.01234" in text and "3 authors · 18 Nov 2026 · ▲ 12" in text
    assert "Why: theorem proving (title and abstract)" in text
    assert 'href="https://huggingface.co/papers/2611.01234"' in html
    assert "Acme AI" in html and "2 papers picked for you" in html
    assert "{{" not in html and "{%" not in html and "<mj-" not in html


def test_message_ids_are_stable_per_subscriber_and_day() -> None:
    assert digest_message_id("a@x.org", DAY, "d.org") == digest_message_id("A@x.org", DAY, "d.org")
    assert digest_message_id("a@x.org", DAY, "d.org") != digest_message_id("a@x.org", date(2026, 11, 21), "d.org")


def test_abstracts_are_cut_at_a_sentence() -> None:
    abstract = "First sentence is here. " * 30
    trimmed = trim_abstract(abstract, limit=100)
    assert trimmed.endswith("here.") and len(trimmed) <= 100
    assert trim_abstract("x" * 50 + " word" * 100, limit=80).endswith("…")


def test_hostile_titles_cannot_break_markup_or_headers() -> None:
    title = 'Attack <script>alert(1)</script> & {{ 7*7 }} "q"\r\nBcc: victim@example.org'
    parsed = _parse([_pick(title, abstract="<img src=x onerror=alert(1)> & more")])
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "{{ 7*7 }}" in html and "49" not in html
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"] and "Bcc: victim" in parsed["Subject"]


def test_unicode_titles_are_encoded_in_the_subject() -> None:
    title = "Беспилотники и 定理证明: ∀x, P(x) 🚀 " + "שלום"
    parsed = _parse([_pick(title)])
    assert title.strip() in parsed["Subject"]
    raw = _parse([_pick(title)]).as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\n"))


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(max_size=800))
def test_any_text_renders_into_a_parseable_message(title: str, abstract: str) -> None:
    parsed = _parse([_pick(title, abstract=abstract)])
    assert parsed["To"] == "Ada <ada@example.org>"
    assert len(parsed.get_payload()) == 2  # type: ignore[arg-type]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script" not in html.lower() or "<script" not in (title + abstract).lower()


def test_an_empty_digest_renders_a_short_note() -> None:
    parsed = _parse([])
    assert parsed["Subject"] == "No new papers on theorem proving, Lean today"
    assert "no new paper matched your keywords" in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_built_wheel_carries_the_templates(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO_ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("newsletter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "newsletter/templates/digest.mjml.j2" in names
    assert "newsletter/templates/digest.txt.j2" in names
