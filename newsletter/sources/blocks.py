"""A capture as a sequence of blocks (heading, paragraph, list item), each with its links.

The card finder (`cards.py`) reads blocks, never markup: Markdown goes through markdown-it-py
(`markdown_blocks`) and HTML through selectolax (`html_blocks`), and both give the same
`Block` values. A block keeps its lines (a paragraph's soft line breaks outside links), so a
metadata paragraph (`• 3 authors` / `·` / `Jan 17`) can be read line by line while a wrapped
abstract stays one text.

Crawlers break Markdown in known ways, mended before parsing (`_mend`): a link whose text runs
over several lines or paragraphs (`[Upvote\\n\\n117](...)`, a heading whose link text wraps onto
the next line), and a title continued on a second heading line. Plain-text captures put a
link's URL on its own line after the text: such a line is attached to the block before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser, LexborNode

from newsletter.sources.links import is_bare_url

MAX_LINK_LINES = 40  # a link's text over more lines than this is not one link (a wrapped abstract fits)
# A backslash before a space or the end of a line is a Markdown line break left in the text
# (`Engage\  with`, `knowledge flows\\`): it reads as a space.
STRAY_BACKSLASH = re.compile(r"\\+(?=\s|$)")
# `[图片：无替代文本]`, `[image]`: an image placeholder some tools write instead of alt text.
PLACEHOLDER = re.compile(r"\[[^\[\]]*\]")
BACKSLASH = "\\"
TEXT_FENCES = frozenset({"", "text", "txt", "plain", "markdown", "md"})
# A heading's title wrapped onto an indented next line, as arXiv titles are (`end-to-end\n  multi`).
INDENTED_CONTINUATION = re.compile(r"[ \t]{1,4}(?![-*+>#\[!]|[0-9]+[.)])\S.*")
ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+|$)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[([^\[\]\n]+)\]:", re.MULTILINE)
REFERENCE_USE = re.compile(r"\]\[([^\[\]\n]+)\]")
HTML_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)")
# Inline markup a converter leaves in Markdown; any other tag-like word is the page's text.
HTML_ELEMENTS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "del", "dfn", "em", "font",
     "i", "img", "ins", "kbd", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup",
     "time", "u", "var", "wbr", "div", "p", "section", "article", "svg", "path", "picture",
     "source", "video", "audio", "iframe", "input", "button", "label", "details", "summary"}
)  # fmt: skip
HTML_BLOCK_TAGS = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "div", "article", "section", "header",
     "footer", "main", "aside", "blockquote", "dd", "dt", "td", "th", "figcaption", "ul", "ol",
     "table", "tr", "nav", "form", "time"}
)  # fmt: skip
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
HTML_SKIPPED = "script, style, noscript, template, svg, head, button"
_MARKDOWN = MarkdownIt("commonmark")


@dataclass(frozen=True)
class Link:
    url: str
    text: str


@dataclass(frozen=True)
class Line:
    text: str
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Block:
    """A heading (`level` 1-6) or another block (`level` 0), at its 1-based first line."""

    line: int
    level: int
    lines: tuple[Line, ...]

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines if line.text)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(link for line in self.lines for link in line.links)


def clean(text: str) -> str:
    """Whitespace folded, stray line-break backslashes dropped."""
    return " ".join(STRAY_BACKSLASH.sub(" ", text).split())


# --- Markdown ----------------------------------------------------------------------------


def markdown_blocks(text: str) -> list[Block]:
    """The blocks of a Markdown (or plain-text) capture, line numbers as in `text`."""
    return _attach_bare_urls(_markdown_blocks(text, 0))


def _markdown_blocks(text: str, offset: int) -> list[Block]:
    tokens = _MARKDOWN.parse(_mend(text.split("\n")) + _missing_definitions(text))
    blocks: list[Block] = []
    level = 0
    for token in tokens:
        if token.type == "fence" and token.map is not None and token.info.strip() in TEXT_FENCES:
            # Some tools wrap the whole page in ```text ... ```: read it as the page it is.
            blocks.extend(_markdown_blocks(token.content, offset + token.map[0] + 1))
        elif token.type == "heading_open":
            level = int(token.tag[1])
        elif token.type == "inline" and token.map is not None:
            lines = _inline_lines(token.children or [])
            if lines:
                blocks.append(Block(offset + token.map[0] + 1, level, tuple(lines)))
            level = 0
    return blocks


def _missing_definitions(text: str) -> str:
    """Definitions for reference links whose definition the capture lost (`[Title][3]`).

    They point nowhere (`#missing-reference`), so the text still reads as a link's text rather
    than as `[Title][3]`. Appended at the end, so line numbers do not move.
    """
    defined = {label.casefold() for label in REFERENCE_DEFINITION.findall(text)}
    used = {label for label in REFERENCE_USE.findall(text) if label.strip()}
    missing = sorted({label for label in used if label.casefold() not in defined})
    return "".join(f"\n\n[{label}]: #missing-reference" for label in missing)


def _mend(lines: list[str]) -> str:
    """Rejoin links and headings that a crawler broke over lines; line count is kept."""
    mended = _joined_headings(lines)
    index = 0
    while index < len(mended):
        depth = _open_depth(mended[index])
        if depth > 0:
            end = _closing_line(mended, index, depth)
            if end is not None:
                heading = ATX_HEADING.match(mended[index]) is not None
                parts = [mended[index].rstrip().rstrip(BACKSLASH)]
                for number in range(index + 1, end + 1):
                    follow = mended[number]
                    if heading:  # `### [Title first part` / `### second part](url)`
                        follow = ATX_HEADING.sub("", follow, count=1)
                    # a line break (`\\`) inside the link's text reads as a space
                    parts.append(follow.strip() if number == end else follow.strip().rstrip(BACKSLASH))
                mended[index] = " ".join(part for part in parts if part.strip())
                for blank in range(index + 1, end + 1):
                    mended[blank] = ""
                index = end + 1
                continue
        index += 1
    return "\n".join(mended)


def _joined_headings(lines: list[str]) -> list[str]:
    """A heading continued on the next line is one heading: the next line is a heading of the
    same level, or an indented line closing the paragraph (an arXiv title's wrap)."""
    joined = list(lines)
    for index in range(len(joined) - 1, 0, -1):
        closing = index + 1 == len(joined) or not joined[index + 1].strip()
        if (
            ATX_HEADING.match(joined[index - 1])
            and INDENTED_CONTINUATION.fullmatch(joined[index])
            and closing
        ):
            joined[index - 1] = f"{joined[index - 1].rstrip()} {joined[index].strip()}"
            joined[index] = ""
            continue
        this, before = ATX_HEADING.match(joined[index]), ATX_HEADING.match(joined[index - 1])
        if this and before and this.group(1) == before.group(1) and joined[index].strip("# \t"):
            rest = joined[index][this.end() :].strip()
            joined[index - 1] = f"{joined[index - 1].rstrip().rstrip(BACKSLASH)} {rest}"
            joined[index] = ""
    return joined


def _open_depth(line: str) -> int:
    """How many `[` this line leaves open (escaped brackets and code spans aside)."""
    depth = 0
    for char in _brackets(line):
        depth = depth + 1 if char == "[" else max(0, depth - 1)
    return depth


def _brackets(line: str) -> str:
    return "".join(ch for ch in re.sub(r"\\.|`[^`]*`", "", line) if ch in "[]")


def _closing_line(lines: list[str], start: int, depth: int) -> int | None:
    """The line where the open link text closes as a link (`](` or `][`), if near enough."""
    for index in range(start + 1, min(len(lines), start + MAX_LINK_LINES + 1)):
        line = re.sub(r"\\.|`[^`]*`", "", lines[index])
        for position, char in enumerate(line):
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth == 0:
                    follow = line[position + 1 : position + 2]
                    return index if follow in ("(", "[") else None
        if ATX_HEADING.match(lines[index]) and not ATX_HEADING.match(lines[start]):
            return None
    return None


def _inline_lines(children: list[Token]) -> list[Line]:
    """An inline token's text split at line breaks outside links, with each line's links."""
    lines: list[Line] = []
    parts: list[str] = []
    links: list[Link] = []
    open_links: list[tuple[str, int]] = []  # href, index in parts where its text starts

    def flush() -> None:
        text = clean("".join(parts))
        if text or links:
            lines.append(Line(text, tuple(links)))
        parts.clear()
        links.clear()

    for child in children:
        if child.type == "text" or child.type == "code_inline":
            parts.append(child.content)
        elif child.type == "html_inline" and _literal_tag(child.content):
            parts.append(child.content)  # `<think>` in a title is text, not markup
        elif child.type in ("softbreak", "hardbreak"):
            if open_links:
                parts.append(" ")
            else:
                flush()
        elif child.type == "link_open":
            open_links.append((str(child.attrs.get("href", "")), len(parts)))
            parts.append(" ")
        elif child.type == "link_close" and open_links:
            href, start = open_links.pop()
            text = clean("".join(parts[start:]))
            if PLACEHOLDER.fullmatch(text):
                del parts[start:]
                text = ""
            links.append(Link(href, text))
            parts.append(" ")
    flush()
    return lines


def _literal_tag(tag: str) -> bool:
    """True for a tag-like word that is no HTML element (`<think>`), shown as text on the page."""
    name = HTML_TAG_NAME.match(tag)
    return name is not None and name.group(1).lower() not in HTML_ELEMENTS


def _attach_bare_urls(blocks: list[Block]) -> list[Block]:
    """A block (or line) that is only a URL becomes a link of the block before it."""
    result: list[Block] = []
    for block in blocks:
        kept: list[Line] = []
        for line in block.lines:
            if line.text and is_bare_url(line.text) and len(line.links) <= 1:
                url = line.links[0].url if line.links else line.text.strip("<>")
                target = kept or (list(result[-1].lines) if result else None)
                if target is not None:
                    target[-1] = Line(target[-1].text, (*target[-1].links, Link(url, "")))
                    if not kept:
                        result[-1] = Block(result[-1].line, result[-1].level, tuple(target))
                continue
            kept.append(line)
        if kept:
            result.append(Block(block.line, block.level, tuple(kept)))
    return result


# --- HTML --------------------------------------------------------------------------------


def html_blocks(html: str) -> list[Block]:
    """The page's text in document order, one block per run of inline content, with links.

    Each block element's inline content (text, `<a>`, `<span>` ... between its block children)
    is one block, so a byline beside a date still reads as its own line. A link that wraps
    blocks (HF wraps a card's thumbnail and byline in `<a>`) counts as a link of every block
    inside it. The HTML parser keeps no line numbers: blocks are numbered in document order.
    """
    tree = LexborHTMLParser(html)
    for node in tree.css(HTML_SKIPPED):
        node.decompose()
    root = tree.body or tree.root
    blocks: list[Block] = []
    if root is not None:
        _walk(root, None, blocks)
    return blocks


def _walk(node: LexborNode, wrapping: str | None, blocks: list[Block]) -> None:
    run: list[LexborNode] = []
    for child in node.iter(include_text=True):
        if child.tag in HTML_BLOCK_TAGS or (child.tag != "-text" and _has_block(child)):
            _flush(run, wrapping, blocks)
            run = []
            href = child.attributes.get("href") if child.tag == "a" else None
            _walk(child, str(href) if href else wrapping, blocks)
        else:
            run.append(child)
    _flush(run, wrapping, blocks)


def _has_block(node: LexborNode) -> bool:
    return any(
        child.tag in HTML_BLOCK_TAGS and child.mem_id != node.mem_id
        for child in node.traverse(include_text=False)
    )


def _flush(run: list[LexborNode], wrapping: str | None, blocks: list[Block]) -> None:
    text = clean(" ".join(node.text(deep=True, separator=" ") or "" for node in run))
    links: list[Link] = []
    for node in run:
        if node.tag == "-text":
            continue
        anchors = [node] if node.tag == "a" else node.css("a[href]")
        for anchor in anchors:
            if anchor.attributes.get("href"):
                anchor_text = clean(anchor.text(deep=True, separator=" "))
                links.append(Link(str(anchor.attributes["href"]), anchor_text))
    if not text and not links:
        return  # whitespace between elements
    if wrapping:
        links.append(Link(wrapping, text))
    if text or links:
        parent = run[0].parent if run else None
        level = int(parent.tag[1]) if parent is not None and parent.tag in HEADINGS else 0
        blocks.append(Block(len(blocks) + 1, level, (Line(text, tuple(links)),)))
