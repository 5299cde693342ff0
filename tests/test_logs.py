"""Log lines: one per event, fields kept as data; with NEWSLETTER_LOG_FORMAT=json every stderr
line of a real command (and of the running service, APScheduler included) parses as JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.logs import JsonFormatter, StderrToLog, TextFormatter, configure_logging, fields
from test_cli import REPO_ROOT, newsletter

JSON_KEYS = {"time", "level", "logger", "event", "fields"}


def _record(message: str, *args: object, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("newsletter.ingest", level, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_text_line_carries_the_event_and_its_fields() -> None:
    record = _record("dump ingested", **fields(path="dumps/a b.txt", papers=60, new=58))
    line = TextFormatter().format(record)
    assert line.endswith(' INFO newsletter.ingest: dump ingested path="dumps/a b.txt" papers=60 new=58')
    assert "\n" not in line


def test_a_json_line_keeps_fields_as_data() -> None:
    record = _record("slot sent", **fields(slot="UTC 07:00", sent=3, deferred=1, failed=0, skipped=2))
    document = json.loads(JsonFormatter().format(record))
    assert set(document) == JSON_KEYS
    assert (document["level"], document["logger"], document["event"]) == ("info", "newsletter.ingest", "slot sent")
    assert document["fields"] == {"slot": "UTC 07:00", "sent": 3, "deferred": 1, "failed": 0, "skipped": 2}
    assert document["time"].endswith("Z")


def test_a_json_line_holds_a_traceback_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["fields"]["exception"]


def test_printf_style_messages_of_other_libraries_are_formatted() -> None:
    document = json.loads(JsonFormatter().format(_record("Added job %r", "ingest")))
    assert document["event"] == "Added job 'ingest'" and document["fields"] == {}


def test_stderr_lines_become_events_with_their_level() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.stderr")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        adapter = StderrToLog(logger, stream)
        adapter.write("Error: one bad thing\nWarning: careful\n10%\r50%\r")
        adapter.write("100%\n\n")
        adapter.write("partial ")
        adapter.write("line\n")
    finally:
        logger.removeHandler(handler)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["event"]) for e in events] == [
        ("error", "one bad thing"), ("warning", "careful"), ("info", "100%"), ("info", "partial line"),
    ]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, stderr, hook = root.handlers[:], root.level, sys.stderr, sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.stderr, sys.excepthook = stderr, hook
    logging.captureWarnings(False)
    for name in ("newsletter", "apscheduler"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_levels_our_events_at_info_libraries_quiet_unless_verbose(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(verbose=False, log_format="text", stream=stream)
    logging.getLogger("newsletter.scheduler").info("next send")
    logging.getLogger("newsletter.scheduler").debug("detail")
    logging.getLogger("apscheduler.scheduler").info("Running job")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["next send", "Run time of job was missed"]

    stream = io.StringIO()
    configure_logging(verbose=True, log_format="text", stream=stream)
    logging.getLogger("newsletter.scheduler").debug("detail")
    logging.getLogger("apscheduler.scheduler").info("Running job")
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["detail", "Running job"]


def test_warnings_are_captured_as_json(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(verbose=False, log_format="json", stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    print("printed to stderr by some library", file=sys.stderr)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["logger"] for e in events] == ["py.warnings", "newsletter.cli"]
    assert "an old API" in events[0]["event"] and events[0]["level"] == "warning"
    assert events[1]["event"] == "printed to stderr by some library"


# real commands ----------------------------------------------------------------------------
def _json_lines(text: str) -> list[dict[str, object]]:
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line {number} is not JSON: {line!r}\n{text}")
        assert set(document) == JSON_KEYS, line
        events.append(document)
    return events


def test_ingest_in_json_mode_writes_only_json_lines(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for source in (REPO_ROOT / "examples" / "dumps").iterdir():
        (dumps / source.name).write_bytes(source.read_bytes())
    (dumps / "notes.csv").write_text("a,b,c\n1,2,3\n")

    result = newsletter("ingest", cwd=tmp_path, NEWSLETTER_LOG_FORMAT="json")

    assert result.returncode == 1  # one dump set aside
    events = _json_lines(result.stderr)
    ingested = [e for e in events if e["event"] == "dump ingested"]
    assert sorted(e["fields"]["papers"] for e in ingested) == [6, 8, 14]  # type: ignore[index]
    assert sum(e["fields"]["new"] for e in ingested) == 27  # type: ignore[index,misc]
    set_aside = [e for e in events if e["event"] == "dump set aside"]
    assert len(set_aside) == 1 and set_aside[0]["level"] == "error"
    assert set_aside[0]["fields"]["path"] == "dumps/notes.csv"  # type: ignore[index]
    summary = [e for e in events if str(e["event"]).startswith("Dumps: 3 ingested")]
    assert len(summary) == 1 and summary[0]["logger"] == "newsletter.cli"


def test_an_operator_error_in_json_mode_is_one_json_line(tmp_path: Path) -> None:
    result = newsletter("check", cwd=tmp_path, NEWSLETTER_LOG_FORMAT="json", NEWSLETTER_TIMEZONE="Mars/Olympus")
    assert result.returncode == 1
    (event,) = _json_lines(result.stderr)
    assert event["level"] == "error" and event["logger"] == "newsletter.cli"
    assert str(event["event"]).startswith("invalid settings: NEWSLETTER_TIMEZONE: 'Mars/Olympus'")


def test_the_log_format_may_come_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NEWSLETTER_LOG_FORMAT=json\nNEWSLETTER_SUBSCRIBERS_FILE=nowhere.yaml\n")
    result = newsletter("check", cwd=tmp_path)
    assert result.returncode == 1
    assert any("nowhere.yaml" in str(e["event"]) for e in _json_lines(result.stderr))


def test_the_service_in_json_mode_logs_only_json_and_is_healthy(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [theorem proving]\n    send_at: \"23:59\"\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DUMPS_DIR=str(REPO_ROOT / "examples" / "dumps"), NEWSLETTER_POLL_SECONDS="1",
        NEWSLETTER_LOG_FORMAT="json", NEWSLETTER_CATCH_UP_HOURS="0",
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "run", "-v"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = newsletter("status", "--health", cwd=tmp_path)
            if health.returncode == 0:
                break
            time.sleep(0.2)
        service.send_signal(signal.SIGTERM)
        stdout, stderr = service.communicate(timeout=30)
    finally:
        service.kill()
    assert health is not None and health.returncode == 0, (health, stderr)
    assert service.returncode == 0, stderr
    assert stdout == ""
    events = _json_lines(stderr)
    names = [e["event"] for e in events]
    assert "dump ingested" in names and "newsletter service stopped" in names
    next_send = next(e for e in events if e["event"] == "next send")
    assert next_send["fields"]["slot"] == "UTC 23:59"  # type: ignore[index]
    assert str(next_send["fields"]["at"]).endswith("T23:59:00+00:00")  # type: ignore[index]
    assert any(str(e["logger"]).startswith("apscheduler") for e in events)  # -v lets them speak
