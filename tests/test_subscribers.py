"""The subscribers file: valid entries survive broken ones; every error names file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import SubscribersError
from newsletter.subscribers import load_subscribers, parse_subscribers

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"max_papers": 10, "send_at": "07:00", "timezone": "UTC"}

BROKEN = """\
defaults:
  max_papers: 6
subscribers:
  - email: ada@example.org
    keywords: [theorem proving, Lean]
  - email: bob@example
    keywords: [anything]
  - email: carol@example.org
    keywords: []
  - email: ADA@example.org
    keywords: [again]
  - email: dan@example.org
    keywords: [vision]
    colour: blue
  - email: eve@example.org
    keywords: [audio]
    timezone: Mars/Olympus
  - email: fay@example.org
    keywords: [audio]
    send_at: "25:61"
  - email: gus@example.org
    keywords: [robotics]
    send_at: 7:30
  - email: hal@example.org
    name: "Hal\\r\\nBcc: victim@example.org"
    keywords: [robotics]
  - email: ivy@example.org
    keywords: [speech, "  "]
  - email: jon@example.org
    keywords: [robotics]
    max_papers: 3
    send_empty: true
"""


def _parse(text: str):
    return parse_subscribers(text, path="subscribers.yaml", **DEFAULTS)


def test_the_example_file_is_valid() -> None:
    loaded = load_subscribers(REPO_ROOT / "subscribers.example.yaml", **DEFAULTS)
    assert loaded.problems == ()
    assert len(loaded.subscribers) == 4 and len(loaded.active) == 3
    ada = loaded.find("Ada@Example.org")
    assert ada is not None
    assert ada.keywords == ("theorem proving", "Lean", "formal verification")
    assert (ada.max_papers, ada.timezone, ada.send_at, ada.exclude) == (5, "America/New_York", "08:00", ("survey",))
    grace = loaded.find("grace@example.org")
    assert grace is not None and (grace.max_papers, grace.send_at, grace.timezone) == (8, "07:30", "Europe/Berlin")


def test_each_broken_entry_is_reported_precisely_and_the_rest_survive() -> None:
    loaded = _parse(BROKEN)
    assert [s.email for s in loaded.subscribers] == ["ada@example.org", "jon@example.org"]
    assert loaded.subscribers[0].max_papers == 6  # from the file's defaults
    assert loaded.subscribers[1].send_empty is True
    assert [str(p) for p in loaded.problems] == [
        "subscribers.yaml:6: entry 2 (bob@example): email is not a valid address",
        "subscribers.yaml:9: entry 3 (carol@example.org): keywords must list at least one keyword (or the entry must follow authors or ask for trending papers)",
        "subscribers.yaml:10: entry 4 (ADA@example.org): duplicate address, already listed at line 4",
        "subscribers.yaml:14: entry 5 (dan@example.org): unknown field 'colour' (check the spelling; see subscribers.example.yaml)",
        "subscribers.yaml:17: entry 6 (eve@example.org): timezone: 'Mars/Olympus' is not a known time zone; use an IANA name such as \"Europe/Berlin\"",
        "subscribers.yaml:20: entry 7 (fay@example.org): send_at: '25:61' is not a time of day as HH:MM (24-hour), e.g. \"07:30\"",
        "subscribers.yaml:23: entry 8 (gus@example.org): send_at must be quoted, e.g. \"07:30\" (YAML read it as 450)",
        "subscribers.yaml:25: entry 9 (hal@example.org): name must be one line of text without control characters",
        "subscribers.yaml:28: entry 10 (ivy@example.org): keywords must be non-empty text",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subscribers: [\n  - email: a\n", "subscribers.yaml:2: not valid YAML"),
        ("- just a list\n", "subscribers.yaml:1: expected a mapping with a 'subscribers:' list"),
        ("subscriber:\n  - email: a@example.org\n", "subscribers.yaml:1: expected a mapping"),
        ("defaults:\n  email: x@example.org\nsubscribers: []\n", "'defaults' may only set"),
    ],
)
def test_an_unreadable_file_raises_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SubscribersError) as caught:
        _parse(text)
    assert message in str(caught.value)


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SubscribersError, match="copy subscribers.example.yaml"):
        load_subscribers(tmp_path / "nope.yaml", **DEFAULTS)


def test_authors_and_trending_are_entry_fields_and_trending_alone_is_enough() -> None:
    result = _parse(
        "defaults:\n"
        "  trending: 2\n"
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    keywords: [Lean]\n"
        "    authors: [Yann LeCun, Ada Lovelace]\n"
        "  - email: bob@example.org\n"
        "    trending: 5\n"
        "  - email: cy@example.org\n"
        "    authors: Yann LeCun\n"
        "  - email: dee@example.org\n"
        "    trending: 0\n"
        "  - email: eve@example.org\n"
        "    keywords: [x]\n"
        "    trending: 500\n"
    )
    ada, bob, cy = result.subscribers
    assert ada.authors == ("Yann LeCun", "Ada Lovelace") and ada.trending == 2
    assert bob.keywords == () and bob.trending == 5
    assert cy.authors == ("Yann LeCun",) and cy.keywords == ()
    assert [str(problem) for problem in result.problems] == [
        "subscribers.yaml:11: entry 4 (dee@example.org): keywords must list at least one keyword "
        "(or the entry must follow authors or ask for trending papers)",
        "subscribers.yaml:15: entry 5 (eve@example.org): trending: Input should be less than or equal to 50",
    ]


@pytest.mark.parametrize("defaults_first", [True, False])
def test_file_defaults_apply_wherever_they_are_written(defaults_first: bool) -> None:
    defaults = "defaults:\n  max_papers: 2\n  send_at: \"06:15\"\n"
    entries = (
        "subscribers:\n"
        "  - email: ada@example.org\n    keywords: [Lean]\n"
        "  - email: bob@example.org\n    keywords: [RL]\n    max_papers: 7\n"
        "  - email: bad\n    keywords: [RL]\n"
    )
    loaded = _parse(defaults + entries if defaults_first else entries + defaults)
    assert [(s.email, s.max_papers, s.send_at) for s in loaded.subscribers] == [
        ("ada@example.org", 2, "06:15"), ("bob@example.org", 7, "06:15"),
    ]
    [problem] = loaded.problems  # reported once, even when the file is read twice
    assert problem.entry == 3 and "email" in problem.message


def test_bad_defaults_after_the_list_are_one_clear_error() -> None:
    with pytest.raises(SubscribersError, match="'defaults' may only set"):
        _parse("subscribers:\n  - email: ada@example.org\n    keywords: [Lean]\ndefaults:\n  colour: red\n")
