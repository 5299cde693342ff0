"""The subscribers file: YAML in, validated `Subscriber` values out, with precise errors.

A broken entry never stops the others: `load_subscribers` returns the valid entries and a
list of problems, each naming file, line, entry and field, e.g.
`subscribers.yaml:14: entry 3 (bob@example): email is not a valid address`.
Only a file that cannot be read as a whole raises `SubscribersError`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass as validated_dataclass

from newsletter.errors import SubscribersError
from newsletter.settings import check_timezone, parse_send_at

CONTROL_CHARACTERS = frozenset(chr(code) for code in range(32)) | {"\x7f"}
DEFAULTABLE_FIELDS = ("max_papers", "send_at", "timezone", "exclude", "active", "send_empty", "trending")
MAX_TRENDING = 50


def _single_line(value: str, what: str) -> str:
    if any(ch in CONTROL_CHARACTERS for ch in value):
        raise ValueError(f"{what} must be one line of text without control characters")
    return value.strip()


@validated_dataclass(frozen=True, slots=True, kw_only=True, config=ConfigDict(extra="forbid"))
class Subscriber:
    """One validated entry. Unknown fields are errors, so typos do not pass silently.

    A validated dataclass with slots, not a model: a day may hold 100,000 of them, and a slotted
    value is about 150 bytes where a model with its per-instance dict and set of fields set was
    1.2 KB. Keywords and other repeated text are interned, so each distinct keyword is stored once.
    """

    email: str
    name: str | None = None
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()  # papers by these authors are picked (where dumps name authors)
    trending: int = Field(default=0, ge=0, le=MAX_TRENDING)  # the day's N most-upvoted papers
    max_papers: int = Field(ge=1, le=100)
    timezone: str
    send_at: str
    active: bool = True
    send_empty: bool = False

    @field_validator("email", mode="before")
    @classmethod
    def _valid_email(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("email must be text")
        try:
            # Header safety: the validator rejects spaces, line breaks and anything that
            # is not a plain address, so nothing from YAML can reach a header unchecked.
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValueError("email is not a valid address") from None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        return None if value is None else _single_line(value, "name")

    @model_validator(mode="after")
    def _asks_for_something(self) -> Subscriber:
        if not (self.keywords or self.authors or self.trending):
            raise ValueError(
                "keywords must list at least one keyword (or the entry must follow authors "
                "or ask for trending papers)"
            )
        return self

    @field_validator("keywords", "exclude", "authors", mode="before")
    @classmethod
    def _keyword_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of keywords, e.g. [theorem proving, Lean]")
        cleaned = []
        for item in value:
            if not isinstance(item, str | int | float) or not str(item).strip():
                raise ValueError("keywords must be non-empty text")
            cleaned.append(sys.intern(_single_line(str(item), "a keyword")))
        return tuple(cleaned)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return sys.intern(check_timezone(value))

    @field_validator("send_at", mode="before")
    @classmethod
    def _valid_send_at(cls, value: object) -> str:
        if isinstance(value, int):  # YAML 1.1 reads an unquoted 07:30 as 450 (sexagesimal)
            raise ValueError(f'send_at must be quoted, e.g. "07:30" (YAML read it as {value})')
        if not isinstance(value, str):
            raise ValueError('send_at must be a time of day as "HH:MM"')
        parse_send_at(value)
        return sys.intern(value.strip())


@dataclass(frozen=True)
class SubscriberProblem:
    """One invalid entry: where it is and what is wrong with it."""

    path: str
    line: int
    entry: int
    label: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: entry {self.entry} ({self.label}): {self.message}"


@dataclass(frozen=True)
class SubscriberList:
    subscribers: tuple[Subscriber, ...]
    problems: tuple[SubscriberProblem, ...]

    @property
    def active(self) -> tuple[Subscriber, ...]:
        return tuple(s for s in self.subscribers if s.active)

    def find(self, email: str) -> Subscriber | None:
        wanted = email.strip().casefold()
        return next((s for s in self.subscribers if s.email.casefold() == wanted), None)


@dataclass(frozen=True)
class _Located:
    """A YAML mapping with the 1-based line of the mapping and of each key."""

    value: Any
    line: int
    key_lines: dict[str, int]


class _StreamLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's composer and safe constructor over the events of libyaml's parser (or the
    Python one), driven one top-level value, and one subscriber entry, at a time: a big file
    never has its whole node tree in memory (100,000 entries made a 440 MB tree)."""

    def __init__(self, text: str) -> None:
        self._source = _EVENT_LOADER(text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def check_event(self, *choices: Any) -> bool:
        return bool(self._source.check_event(*choices))

    def peek_event(self) -> Any:
        return self._source.peek_event()

    def get_event(self) -> Any:
        return self._source.get_event()

    def value(self, node: yaml.Node) -> Any:
        """The Python value of one node; the constructor's memo of nodes is emptied after it
        (as `construct_document` does), or every node would stay alive."""
        try:
            return self.construct_object(node, deep=True)
        finally:
            self.constructed_objects = {}
            self.recursive_objects = {}
            self.state_generators = []

    def dispose(self) -> None:
        self._source.dispose()


_EVENT_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _MoreThanOneDocument(Exception):
    """A second `---` document after the first (a subscribers file is one document)."""


Entry = Callable[[Any, "_Located"], None]


@dataclass
class _Document:
    """What the file holds besides the entries (each entry goes to the caller as it is read):
    its top-level keys other than `subscribers`, in order; `mapping`: the document is a
    mapping; `listed`: `subscribers` is a list; `keys_after`: top-level keys that came after
    the `subscribers` list."""

    mapping: bool = False
    listed: bool = False
    top: dict[str, Any] = field(default_factory=dict)
    keys_after: list[str] = field(default_factory=list)


def _located(node: yaml.Node) -> _Located:
    key_lines = {}
    if isinstance(node, yaml.MappingNode):
        key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return _Located(None, node.start_mark.line + 1, key_lines)


def _read_document(text: str, entry: Entry, before_entries: Callable[[dict[str, Any]], None]) -> _Document:
    """Stream the document: one entry's nodes at a time, each entry constructed and handed to
    `entry` at once, so no more than one entry is in memory. `before_entries` gets the
    top-level keys read so far when the `subscribers` list starts."""
    loader = _StreamLoader(text)
    document = _Document()
    try:
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return document
        loader.get_event()  # DocumentStart
        if not loader.check_event(yaml.MappingStartEvent):
            loader.compose_node(None, None)  # read it, to report a syntax error if there is one
            return document
        document.mapping = True
        loader.get_event()
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = loader.compose_node(None, None)
            key = loader.value(key_node)
            if key == "subscribers" and loader.check_event(yaml.SequenceStartEvent):
                document.listed = True
                before_entries(document.top)
                start = loader.get_event()
                sequence = yaml.SequenceNode("tag:yaml.org,2002:seq", [], start.start_mark, None)
                index = 0
                while not loader.check_event(yaml.SequenceEndEvent):
                    node = loader.compose_node(sequence, index)
                    entry(loader.value(node), _located(node))
                    index += 1
                loader.get_event()
            else:
                if document.listed:
                    document.keys_after.append(key)
                document.top[key] = loader.value(loader.compose_node(None, None))
        loader.get_event()  # MappingEnd
        if not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # DocumentEnd
            if not loader.check_event(yaml.StreamEndEvent):
                raise _MoreThanOneDocument
    finally:
        loader.dispose()
    return document


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    """The field and message of the first validation error, phrased for an operator."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return field, f"unknown field {field!r} (check the spelling; see subscribers.example.yaml)"
    if error["type"] == "missing":
        return field, f"{field} is required"
    if error["type"] == "too_short" and field == "keywords":
        return field, "keywords must list at least one keyword"
    if field is None and message.startswith("keywords "):  # the entry asks for nothing
        return "keywords", message
    if field and not message.startswith(field):
        message = f"{field}: {message}"
    return field, message


def parse_subscribers(
    text: str, *, path: str, max_papers: int, send_at: str, timezone: str
) -> SubscriberList:
    """Validate a subscribers document. Defaults: the file's `defaults:`, then the settings.

    Entries are validated as they are read (a file of 100,000 entries never has them all in
    memory as raw YAML). A `defaults:` written after the list is applied by reading the file
    a second time."""
    settings_defaults = {"max_papers": max_papers, "send_at": send_at, "timezone": timezone}
    reader = _EntryReader(path, settings_defaults)
    document = _read(text, path, reader)
    if document.mapping and document.listed and "defaults" in document.keys_after:
        reader = _EntryReader(path, settings_defaults, document.top.get("defaults"))
        _read(text, path, reader)
    return SubscriberList(tuple(reader.valid), tuple(reader.problems))


def _read(text: str, path: str, reader: _EntryReader) -> _Document:
    try:
        document = _read_document(text, reader.entry, reader.start)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SubscribersError(f"not valid YAML: {problem}", path=path, line=line) from None
    except _MoreThanOneDocument:
        raise SubscribersError("expected one YAML document, found more", path=path) from None
    if not document.mapping or not document.listed:
        raise SubscribersError(
            "expected a mapping with a 'subscribers:' list (see subscribers.example.yaml)",
            path=path,
            line=1,
        )
    unknown = set(document.top) - {"defaults"}
    if unknown:
        raise SubscribersError(
            f"unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}; "
            "only 'defaults' and 'subscribers' are allowed",
            path=path,
        )
    _check_defaults(document.top.get("defaults") or {}, path)
    return document


def _check_defaults(file_defaults: object, path: str) -> dict[str, Any]:
    if not isinstance(file_defaults, dict) or set(file_defaults) - set(DEFAULTABLE_FIELDS):
        raise SubscribersError(f"'defaults' may only set {', '.join(DEFAULTABLE_FIELDS)}", path=path)
    return file_defaults


class _EntryReader:
    """Validates the entries one by one as the document is read."""

    def __init__(self, path: str, settings_defaults: dict[str, Any], file_defaults: object = None) -> None:
        self.path = path
        self.settings_defaults = settings_defaults
        self.file_defaults = file_defaults
        self.base = dict(settings_defaults)
        self.valid: list[Subscriber] = []
        self.problems: list[SubscriberProblem] = []
        self.first_line_of: dict[str, int] = {}
        self.index = 0

    def start(self, top: dict[str, Any]) -> None:
        """The list starts: the defaults are those written above it (or given)."""
        defaults = self.file_defaults if self.file_defaults is not None else top.get("defaults")
        self.base = {**self.settings_defaults, **_check_defaults(defaults or {}, self.path)}

    def entry(self, raw: Any, where: _Located) -> None:
        self.index += 1
        label = str(raw.get("email", "no email")) if isinstance(raw, dict) else "?"

        def problem(message: str, field: str | None = None) -> SubscriberProblem:
            line = where.key_lines.get(field or "", where.line)
            return SubscriberProblem(self.path, line, self.index, label, message)

        if not isinstance(raw, dict):
            self.problems.append(problem("each entry must be a mapping with at least email and keywords"))
            return
        try:
            subscriber = Subscriber(**{**self.base, **raw})
        except ValidationError as exc:
            field, message = _first_error(exc)
            self.problems.append(problem(message, field))
            return
        key = subscriber.email.casefold()
        if key in self.first_line_of:
            self.problems.append(
                problem(f"duplicate address, already listed at line {self.first_line_of[key]}", "email")
            )
            return
        self.first_line_of[key] = where.line
        self.valid.append(subscriber)


def load_subscribers(
    path: Path, *, max_papers: int, send_at: str, timezone: str
) -> SubscriberList:
    """Read and validate the subscribers file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubscribersError(
            "subscribers file not found; copy subscribers.example.yaml there or set "
            "NEWSLETTER_SUBSCRIBERS_FILE",
            path=str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscribersError(f"cannot read the file: {exc}", path=str(path)) from None
    return parse_subscribers(
        text, path=str(path), max_papers=max_papers, send_at=send_at, timezone=timezone
    )
