"""Logging for every command: where log lines go and what each line looks like.

Only the CLI callback calls `configure_logging`; every other module just logs through
`logging.getLogger(__name__)`. An event is a short fixed phrase, and its values travel as
fields, never formatted into the phrase, so a JSON line keeps them as data:

    from newsletter.logs import fields
    log = logging.getLogger(__name__)

    log.info("dump ingested", extra=fields(path="dumps/a.txt", papers=60, new=58))
    log.warning("dump set aside", extra=fields(path="dumps/b.txt", why="not a recognised dump"))
    log.info("slot sent", extra=fields(slot="UTC 07:00", sent=12, deferred=1, failed=0, skipped=3))
    log.info("next send", extra=fields(slot="UTC 07:00", at="2026-04-17T07:00:00+00:00"))
    log.info("retry round", extra=fields(due=3, sent=2, deferred=1, failed=0))

Formats (NEWSLETTER_LOG_FORMAT)
- `text` (default): one plain line per event, never wrapped, the same on a terminal, in a
  file or in Docker's log: `2026-04-16T07:00:00.123Z INFO newsletter.ingest: dump ingested
  path=dumps/a.txt papers=60 new=58`.
- `json`: every line the process writes on stderr is one JSON object
  `{"time", "level", "logger", "event", "fields"}`. Third-party output is included: library
  loggers (APScheduler, uvicorn) share the handler, `warnings` are captured into logging, the
  CLI's own stderr lines (`Error: ...`, `Skipped: ...`) and anything else printed to stderr
  become `newsletter.cli` events, and an unexpected traceback becomes one `critical` event.

Levels: INFO for our own events by default (DEBUG with `-v`); everything else at WARNING,
so APScheduler's per-job chatter and model-loading messages stay quiet unless `-v`.

The standard library does all of this in a formatter and a small stream adapter; structlog or
python-json-logger would add a second way to log next to `logging.getLogger(__name__)` (the
project's one way) for a JSON shape of five keys.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

OWN_LOGGER = "newsletter"
CLI_LOGGER = "newsletter.cli"
# Loggers kept at WARNING unless -v, whatever the root level: they speak on every poll or
# while a model loads.
QUIET_UNLESS_VERBOSE = (
    "apscheduler",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "filelock",
    "urllib3",
    "httpx",
    "asyncio",
    "mail.log",  # aiosmtpd
)
_FIELDS = "fields"
_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """The `extra=` argument that attaches `values` to a log line as its fields."""
    return {_FIELDS: values}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of a record: `extra=fields(...)`, plus any other `extra=` keys."""
    found: dict[str, Any] = {}
    attached = getattr(record, _FIELDS, None)
    if isinstance(attached, Mapping):
        found.update(attached)
    for key, value in record.__dict__.items():
        if key not in _RECORD_KEYS and key != _FIELDS and not key.startswith("_"):
            found[key] = value
    return found


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text == "" or any(char.isspace() or char in "\"=" for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: event key=value ...`, one line (a traceback follows, indented)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extra = record_fields(record)
        if extra:
            line += " " + " ".join(f"{key}={_plain(value)}" for key, value in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.replace("\r", "")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        extra = record_fields(record)
        if record.exc_info:
            extra["exception"] = self.formatException(record.exc_info)
        document = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "fields": extra,
        }
        return json.dumps(document, default=str, ensure_ascii=False)


class StderrToLog(io.TextIOBase):
    """A stand-in for sys.stderr in JSON mode: each line written becomes a log event.

    Lines starting with `Error:` or `Set aside:` are errors, `Warning:` and `Skipped:` are
    warnings, anything else is info. A carriage return rewrites its line, as on a terminal: a
    progress bar leaves one event with its final state, not one per redraw. Blank lines are
    dropped.
    """

    def __init__(self, logger: logging.Logger, underlying: TextIO) -> None:
        super().__init__()
        self._logger = logger
        self.underlying = underlying  # the real stderr, where the log handler writes
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            *lines, pending = (self._pending + text).split("\n")
            # Keep only the last redraw of an unfinished line (a trailing \r is kept with it).
            self._pending = pending[pending.rfind("\r", 0, len(pending) - 1) + 1 :]
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._pending = self._pending, ""
        self._emit(line)

    def _emit(self, line: str) -> None:
        text = line.rstrip("\r").rsplit("\r", 1)[-1].strip()
        if not text:
            return
        for prefix, level in (("Error:", logging.ERROR), ("Set aside:", logging.ERROR),
                              ("Warning:", logging.WARNING), ("Skipped:", logging.WARNING)):
            if text.startswith(prefix):
                self._logger.log(level, text.removeprefix(prefix).strip())
                return
        self._logger.info(text)


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger(OWN_LOGGER).critical(
        "unexpected error (a bug): %s", error, exc_info=(kind, error, traceback)
    )


def configure_logging(*, verbose: bool, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Route every log line of the process to `stream` (stderr) in the chosen format."""
    target = stream if stream is not None else sys.stderr
    if isinstance(target, StderrToLog):  # configured before, in this process
        target = target.underlying
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    logging.getLogger(OWN_LOGGER).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_UNLESS_VERBOSE:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    logging.captureWarnings(True)
    if log_format == "json":
        sys.stderr = StderrToLog(logging.getLogger(CLI_LOGGER), target)
        sys.excepthook = _log_uncaught
