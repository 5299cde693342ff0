"""Reading the small form bodies the routes accept, strictly: anything else is a 4xx.

A one-click unsubscribe (RFC 8058 §3.2) arrives as `application/x-www-form-urlencoded` or as
`multipart/form-data` with the single field `List-Unsubscribe=One-Click`; the pages' own forms
post urlencoded. Bodies were already size-limited and read by `guard.BodyGuard`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MAX_FIELDS = 4
MAX_PART_BYTES = 1024
ONE_CLICK = ("List-Unsubscribe", "One-Click")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded or multipart body; 415 for another type, 400 for a body that
    is not well formed (bad percent-encoding, bad UTF-8, a file, too many fields)."""
    kind = media_type(request)
    if kind == URLENCODED:
        body = await request.body()
        try:
            pairs = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS,
            )
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "The form is not well formed.") from None
        return _unique(pairs)
    if kind == MULTIPART:
        try:
            form = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_BYTES)
        except (FormParserError, ValueError, KeyError):  # Starlette maps its own errors to 400
            raise HTTPException(400, "The form is not well formed.") from None
        pairs = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise HTTPException(400, "The form is not well formed.")
            pairs.append((name, value))
        return _unique(pairs)
    raise HTTPException(415, "Send the form as application/x-www-form-urlencoded or multipart/form-data.")


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise HTTPException(400, "The form is not well formed.")
        fields[name] = value
    return fields


async def expect_form(request: Request, *expected: tuple[str, str]) -> None:
    """Accept the body only if its fields are exactly `expected` (400 otherwise).

    Each route takes one fixed body, so a body that is anything else (other fields, a value
    the multipart parser decoded from bad UTF-8) changes nothing.
    """
    if await read_form(request) != dict(expected):
        raise HTTPException(400, "This request is not one this page sends.")
