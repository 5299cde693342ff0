"""The HF papers pages saved from a browser: HTML ("Save page as", SingleFile, curl) or MHTML
(Chrome's "Webpage, Single File").

The HTML is parsed with selectolax (blocks.py turns its block elements into the same blocks a
Markdown capture gives) and the cards are found by their structure (cards.py). Scripts, styles
and templates are dropped first. MHTML is a MIME message: its first `text/html` part is
decoded by the standard `email` package (quoted-printable, charset) and read the same way.
Recognised by an `<html>`, `<!doctype html>` or `<body>` tag near the start of the file (a
Markdown capture carrying a stray `<a id>` anchor is still Markdown), or by MHTML's headers.
"""

from __future__ import annotations

import email
import re
from datetime import date
from email import policy
from email.message import EmailMessage

from newsletter.errors import DumpError
from newsletter.models import ParsedDump
from newsletter.sources.blocks import html_blocks
from newsletter.sources.cards import find_papers, listing_date

FORMAT = "hf-html"
HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
    re.I | re.S,
)
MHTML_HEADER = re.compile(r"^MIME-Version:\s*1\.0\s*$", re.I | re.M)
MULTIPART_RELATED = re.compile(r"^Content-Type:\s*multipart/related\b", re.I | re.M)
HEADER_CHARS = 4096


def recognises(text: str) -> bool:
    head = text[:HEADER_CHARS]
    return HTML_START.match(head) is not None or _is_mhtml(head)


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    html = _html_of_mhtml(text) if _is_mhtml(text[:HEADER_CHARS]) else text
    blocks = html_blocks(html)
    listed = listing_date(blocks, fallback_date)
    papers = find_papers(blocks, listed or fallback_date)
    if not papers:
        raise DumpError(
            "an HTML page without paper cards (no title linking a paper with its abstract); "
            "save the papers listing itself (huggingface.co/papers)",
            line=1,
        )
    return ParsedDump(FORMAT, tuple(papers), listed)


def _is_mhtml(head: str) -> bool:
    return MHTML_HEADER.search(head) is not None and MULTIPART_RELATED.search(head) is not None


def _html_of_mhtml(text: str) -> str:
    message = email.message_from_string(text, policy=policy.default)
    for part in message.walk():
        if isinstance(part, EmailMessage) and part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                # Chrome names no charset on the part; the page inside is UTF-8.
                charset = part.get_content_charset() or "utf-8"
                try:
                    return payload.decode(charset, errors="replace")
                except LookupError:  # an unknown charset name
                    return payload.decode("utf-8", errors="replace")
    raise DumpError("an MHTML file without an HTML part", line=1)
