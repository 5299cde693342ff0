"""The digest templates, compiled once per process and cut into the parts a digest is joined
from: the head (up to the paper cards), one card, and the foot. Pure.

The MJML template is compiled to HTML once (mjml-python keeps Jinja tags intact) and the
plain-text template is read; each is cut at its loop over the cards. Jinja fills the parts
with autoescaping on for HTML (off for text, where an `&amp;` would be wrong), so dump text
is only ever escaped data: it is never parsed as MJML or as template code.

- The head and foot are static text, plain `{{ name }}` values, and "islands": each
  `{% if %}` / `{% for %}` block is rendered by Jinja once per shape (which of its text
  values are empty, and its other values), with marks in place of the text values, which
  are filled in per digest (escaped as Jinja would). A name is given as a mark only when the
  block's syntax tree uses it as `{{ name }}` or as an `{% if name %}` test, where Jinja can
  tell nothing more of it than whether it is empty.
- The card is a Jinja template for its body, and its static text before the first tag and
  after the last, kept once (`Card`).

Static text comes out as `Shared` pieces: the same string objects in every digest, which the
message encodes once (`message.compose_message`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from jinja2 import Environment, StrictUndefined, Template, meta, nodes
from markupsafe import escape
from mjml import mjml2html

# A wheel carries templates/ inside the package (pyproject maps it to newsletter/templates);
# a source checkout or editable install reads the top-level templates/ folder.
TEMPLATE_DIRS = (Path(__file__).parent / "templates", Path(__file__).parent.parent / "templates")
HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
LOOP_START = "{% for item in items %}"
LOOP_END = "{% endfor %}"
SHARED_STATIC = 64  # shorter static text of a head or foot is encoded with the values beside it
# Marks in place of an island's text values, cut out and filled per digest: the templates
# hold no control character, and the values never reach Jinja.
_FIRST_MARK = 0x10
_ISLAND_MARKS = [chr(code) for code in range(_FIRST_MARK, 0x20)]  # one per text value of an island
_ISLAND_MARK = re.compile("([\x10-\x1f])")


class Shared(str):
    """A piece of a digest that many digests share (the template's static text, a card, a
    position). The message encodes it once per process and keeps the encoding on it
    (`encoded`, set by `message.compose_message`), so the encoding lives as long as the
    piece: a card dropped from the memo takes its encodings along."""

    encoded: bytes | None = None


def template_source(name: str) -> str:
    for directory in TEMPLATE_DIRS:
        if (directory / name).is_file():
            return (directory / name).read_text(encoding="utf-8")
    raise FileNotFoundError(f"template {name} not found in {', '.join(map(str, TEMPLATE_DIRS))}")


class _Island:
    """One `{% if %}` / `{% for %}` block of a head or foot, rendered by Jinja once per shape.

    Its text values (names used only as `{{ name }}` or as an `{% if name %}` test) are given
    to Jinja as marks, or as "" when empty, which is all Jinja can tell of them there; its
    other values (the trending papers) are given as they are and are part of the shape."""

    def __init__(self, source: str, env: Environment) -> None:
        tree = env.parse(source)
        names = sorted(meta.find_undeclared_variables(tree))
        fillable = _fillable_names(tree)
        self.template = env.from_string(source)
        self.texts = [name for name in names if name in fillable]
        self.others = [name for name in names if name not in fillable]
        if len(self.texts) > len(_ISLAND_MARKS):
            raise ValueError(f"too many values in one block of the digest template: {source[:60]!r}")
        self.shapes: dict[tuple[object, ...], tuple[str, ...]] = {}

    def pieces(self, context: dict[str, object]) -> tuple[str, ...]:
        """The block as pieces: its static text at even places, marks at odd places."""
        shape = (*(bool(context[name]) for name in self.texts), *(context[name] for name in self.others))
        pieces = self.shapes.get(shape)
        if pieces is None:
            values = {name: context[name] for name in self.others}
            for mark, name in zip(_ISLAND_MARKS, self.texts):
                values[name] = mark if context[name] else ""
            if len(self.shapes) >= 256:  # shapes come from settings and trending lists: few
                self.shapes.clear()
            pieces = tuple(map(_shared_static, _ISLAND_MARK.split(self.template.render(values))))
            self.shapes[shape] = pieces
        return pieces


def _shared_static(piece: str) -> str:
    """A static piece of a head or foot as `Shared` when it is long enough to be worth
    encoding once; a short one is encoded with the values beside it (one encoding per run)."""
    return Shared(piece) if len(piece) >= SHARED_STATIC else piece


def _fillable_names(tree: nodes.Template) -> set[str]:
    """Names used in `tree` only as `{{ name }}` or as an `{% if name %}` test, whose text
    can be filled in after rendering without Jinja seeing it."""
    used: set[str] = set()
    other: set[str] = set()

    def walk(node: nodes.Node, parent: nodes.Node | None) -> None:
        if isinstance(node, nodes.Name) and node.ctx == "load":
            plain = isinstance(parent, nodes.Output) or (isinstance(parent, nodes.If) and parent.test is node)
            (used if plain else other).add(node.name)
        for child in node.iter_child_nodes():
            walk(child, node)

    walk(tree, None)
    return used - other


class Islands:
    """A template as static text, plain `{{ name }}` values and `_Island` blocks: rendering
    gives a list of pieces in which the static ones are the very same string objects every
    time, so the message encodes them once."""

    _TAG = re.compile(r"{{.*?}}|{%-?\s*(\w+).*?-?%}", re.S)
    _NAME = re.compile(r"{{\s*(\w+)\s*}}")
    _OPENERS, _CLOSERS = {"if", "for"}, {"endif", "endfor"}

    def __init__(self, source: str, env: Environment) -> None:
        self.escape = bool(env.autoescape)
        self.parts: list[str | tuple[str] | _Island] = []
        position = 0
        tags = list(self._TAG.finditer(source))
        index = 0
        while index < len(tags):
            tag = tags[index]
            end_index = index
            if tag.group(1) in self._OPENERS:
                depth = 0
                for end_index in range(index, len(tags)):
                    word = tags[end_index].group(1)
                    depth += word in self._OPENERS
                    depth -= word in self._CLOSERS
                    if depth == 0:
                        break
            elif tag.group(1) is not None:
                raise ValueError(f"unexpected {tag.group()} outside a block in the digest template")
            if tag.start() > position:
                self.parts.append(_shared_static(source[position : tag.start()]))
            island_end = tags[end_index].end()
            island = source[tag.start() : island_end]
            name = self._NAME.fullmatch(island)
            # A plain `{{ name }}` is looked up here (escaped as Jinja would); blocks are islands.
            self.parts.append((name.group(1),) if name else _Island(island, env))
            position = island_end
            index = end_index + 1
        if position < len(source):
            self.parts.append(_shared_static(source[position:]))

    def render(self, context: dict[str, object]) -> list[str]:
        pieces: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
            elif type(part) is tuple:
                pieces.append(self._value(context[part[0]]))  # a missing name fails, as StrictUndefined would
            else:
                island = part.pieces(context)
                pieces.append(island[0])
                for number in range(1, len(island), 2):
                    pieces.append(self._value(context[part.texts[ord(island[number]) - _FIRST_MARK]]))
                    pieces.append(island[number + 1])
        return pieces

    def _value(self, value: object) -> str:
        if type(value) is Shared:  # a value many digests share: escaped once, still shared
            return _escaped(value) if self.escape else value
        return str(escape(value)) if self.escape else str(value)


@lru_cache(maxsize=256)
def _escaped(value: Shared) -> Shared:
    return Shared(escape(value))


class Card(NamedTuple):
    """A template's card: the rendered card is `prefix`, the render of `body`, `suffix`; the
    static ends are kept once, not in every card (and `between` is a suffix and the next
    card's prefix, one piece between two cards)."""

    prefix: Shared
    body: Template
    suffix: Shared
    between: Shared


class Parts(NamedTuple):
    head: Islands
    card: Card
    foot: Islands


_LOOP_TAG = re.compile(r"{%-?\s*(for|endfor)\b")
_ANY_TAG = re.compile(r"{[{%#]")
_TAG_END = re.compile(r"[}%#]}")


def _loop_end(source: str, start: int) -> int:
    """Where the loop opened at `start` closes: its matching LOOP_END (loops nest)."""
    depth = 0
    for tag in _LOOP_TAG.finditer(source, start):
        depth += 1 if tag.group(1) == "for" else -1
        if depth == 0:
            return source.index(LOOP_END, tag.start())
    raise ValueError("the card loop of the digest template is never closed")


def _card(source: str, env: Environment) -> Card:
    """The card's static text before its first tag and after its last one, and the rest."""
    first = _ANY_TAG.search(source)
    last = None
    for last in _TAG_END.finditer(source):
        pass
    if first is None or last is None or source[first.end()] == "-" or source[last.start() - 1] == "-":
        return Card(Shared(), env.from_string(source), Shared(), Shared())  # whitespace control reaches the ends
    prefix, suffix = source[: first.start()], source[last.end() :]
    return Card(Shared(prefix), env.from_string(source[first.start() : last.end()]), Shared(suffix), Shared(suffix + prefix))


def _cut(source: str, env: Environment) -> Parts:
    """A template cut at its loop over the cards (LOOP_START and its own LOOP_END; the card
    has loops of its own, and other sections may follow): before, the loop's body, after."""
    start = source.index(LOOP_START)
    end = _loop_end(source, start)
    return Parts(
        Islands(source[:start], env),
        _card(source[start + len(LOOP_START) : end], env),
        Islands(source[end + len(LOOP_END) :], env),
    )


def _environment(*, autoescape: bool) -> Environment:
    env = Environment(autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True)
    # The digest templates call no Jinja global (range, cycler, ...): with none, no render
    # copies them into its context (a third of a card's render time).
    env.globals.clear()
    return env


@lru_cache(maxsize=1)
def html_parts() -> Parts:
    compiled = mjml2html(template_source(HTML_TEMPLATE), fonts={}, disable_comments=True)
    return _cut(compiled, _environment(autoescape=True))


@lru_cache(maxsize=1)
def text_parts() -> Parts:
    return _cut(template_source(TEXT_TEMPLATE), _environment(autoescape=False))


