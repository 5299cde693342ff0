"""The subscribers file: YAML in, validated `Subscriber` values out, with precise errors.

A broken entry never stops the others: `load_subscribers` returns the valid entries and a
list of problems, each naming file, line, entry and field, e.g.
`subscribers.yaml:14: entry 3 (bob@example): email is not a valid address`.
Only a file that cannot be read as a whole raises `SubscribersError`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError

from newsletter.errors import SubscribersError
from newsletter.roster import Roster
from newsletter.subscriber import DEFAULTABLE_FIELDS, Subscriber

__all__ = ["Subscriber", "SubscriberList", "SubscriberProblem", "load_subscribers", "parse_subscribers"]


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
    """The valid entries, in the file's order (a `Roster`: kept in a spool, not as objects),
    and what was wrong with the others."""

    subscribers: Roster
    problems: tuple[SubscriberProblem, ...]

    @property
    def active(self) -> Roster:
        return self.subscribers.where(lambda s: s.active)

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

    def __init__(self, source: str | IO[str]) -> None:
        self._source = _EVENT_LOADER(source)
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


def _read_document(source: str | IO[str], entry: Entry, before_entries: Callable[[dict[str, Any]], None]) -> _Document:
    """Stream the document: one entry's nodes at a time, each entry constructed and handed to
    `entry` at once, so no more than one entry is in memory. `before_entries` gets the
    top-level keys read so far when the `subscribers` list starts."""
    loader = _StreamLoader(source)
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
    """Validate a subscribers document. Defaults: the file's `defaults:`, then the settings."""
    return _parse(lambda: nullcontext(text), path, {"max_papers": max_papers, "send_at": send_at, "timezone": timezone})


Opener = Callable[[], AbstractContextManager["str | IO[str]"]]


def _parse(open_document: Opener, path: str, settings_defaults: dict[str, Any]) -> SubscriberList:
    """Entries are validated as they are read, from the file as it is read (a file of 100,000
    entries is never in memory whole, as text or as YAML). A `defaults:` written after the
    list is applied by reading the document a second time."""
    reader = _EntryReader(path, settings_defaults)
    document = _read(open_document, path, reader)
    if document.mapping and document.listed and "defaults" in document.keys_after:
        reader = _EntryReader(path, settings_defaults, document.top.get("defaults"))
        _read(open_document, path, reader)
    return SubscriberList(reader.valid, tuple(reader.problems))


def _read(open_document: Opener, path: str, reader: _EntryReader) -> _Document:
    try:
        with open_document() as source:
            document = _read_document(source, reader.entry, reader.start)
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscribersError(f"cannot read the file: {exc}", path=path) from None
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
        self.valid = Roster()
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
    """Read and validate the subscribers file at `path`, streamed."""
    if not path.exists():
        raise SubscribersError(
            "subscribers file not found; copy subscribers.example.yaml there or set "
            "NEWSLETTER_SUBSCRIBERS_FILE",
            path=str(path),
        )
    return _parse(
        lambda: path.open(encoding="utf-8"), str(path),
        {"max_papers": max_papers, "send_at": send_at, "timezone": timezone},
    )
