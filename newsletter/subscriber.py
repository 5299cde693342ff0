"""One subscriber: the validated value of one entry of the subscribers file.

Validation is the whole job: every field that reaches a header (the address, the name) is
checked here, keywords are cleaned and interned, times and zones parsed. Reading the file,
and where its errors are, is `newsletter.subscribers`; keeping 100,000 of these is
`newsletter.roster`.
"""

from __future__ import annotations

import sys

from email_validator import EmailNotValidError, validate_email
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.dataclasses import dataclass as validated_dataclass

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
