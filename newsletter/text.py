"""LaTeX residue in titles and abstracts, turned into text a reader understands. Pure.

Listings copy abstracts from arXiv, where authors write LaTeX, and often lose the
backslashes on the way: `{p}_{theta}(Y|X)`, `10^{-45}`, `FVEL\\textnormal{ER}`, `\\scriptsize`,
`\\(\\scoreGamma\\)`, `mathcal{O}(n)`. `clean_latex` rewrites what it recognises:

- math delimiters `\\(`, `\\)`, `\\[`, `\\]` and paired `$` are dropped (a lone "$5" stays);
- size and style switches without an argument (`\\scriptsize`, `\\bf`) are dropped;
- style and text commands keep their argument (`\\textnormal{ER}` -> `ER`, `mathcal{O}` -> `O`),
  with or without their backslash;
- Greek letters become the letter (`\\theta`, `{theta}`, `_{theta}` -> θ);
- superscripts of digits and signs become superscript characters (`10^{-45}` -> 10⁻⁴⁵),
  other sub- and superscripts lose their braces (`{p}_{theta}` -> p_θ);
- `\\ie`, `\\eg`, `\\etal` become "i.e.", "e.g.", "et al."; any other `\\command` loses its
  backslash; braces left around a piece of text are dropped.

Text without any of these comes back unchanged (the common case costs one search). It is
applied where papers are shown (render), not where they are stored: a paper's identity is a
hash of its title as the dump gives it, and cleaning must not change it.
"""

from __future__ import annotations

import re

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "θ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
SWITCHES = (
    "tiny", "scriptsize", "footnotesize", "small", "normalsize", "large", "Large", "LARGE",
    "huge", "Huge", "bf", "it", "rm", "sf", "tt", "em", "displaystyle", "textstyle", "left",
    "right", "quad", "qquad", "noindent", "newline",
)
STYLES = (
    "textnormal", "textbf", "textit", "textrm", "textsf", "texttt", "text", "emph", "mathrm",
    "mathbf", "mathit", "mathsf", "mathtt", "mathcal", "mathbb", "mathfrak", "mathscr",
    "boldsymbol", "operatorname", "underline", "overline", "hat", "tilde", "bar", "vec",
)
ABBREVIATIONS = {"ie": "i.e.", "eg": "e.g.", "etal": "et al.", "vs": "vs."}
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")

# A cheap test first: most titles and abstracts hold none of these.
_ANY = re.compile(r"[\\${}]|\^|_\{|math[a-z]+\b")
_DELIMITERS = re.compile(r"\\[()\[\]]")
_DOLLARS = re.compile(r"\$([^$\s][^$]{0,80}?)\$(?!\d)")  # a lone "$5" is money, not math
_SWITCH = re.compile(r"\\(?:%s)(?![A-Za-z])\s*" % "|".join(SWITCHES))
_STYLE = re.compile(r"\\?\b(?:%s)\s*\{([^{}]*)\}" % "|".join(STYLES))
_STYLE_LETTER = re.compile(r"\\?\b(?:mathcal|mathbb|mathbf|mathrm|mathfrak|mathscr) ?([A-Za-z])(?![A-Za-z])")
_GREEK_COMMAND = re.compile(r"\\(%s)(?![A-Za-z])" % "|".join(sorted(GREEK, key=len, reverse=True)))
_GREEK_BRACED = re.compile(r"\{(%s)\}" % "|".join(GREEK))
_SCRIPT = re.compile(r"([\^_])\{([^{}]*)\}")
_ABBREVIATION = re.compile(r"\\(%s)(?![A-Za-z])\.?" % "|".join(ABBREVIATIONS))
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_BRACED = re.compile(r"\{([^{}]*)\}")
_SPACES = re.compile(r"[ \t]{2,}")


def clean_latex(text: str) -> str:
    """`text` with the LaTeX residue described in the module docstring rewritten."""
    if not _ANY.search(text):
        return text
    text = _DELIMITERS.sub("", text)
    text = _DOLLARS.sub(r"\1", text)
    text = _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1)], text)
    text = _SWITCH.sub("", text)
    text = _GREEK_COMMAND.sub(lambda m: GREEK[m.group(1)], text)
    text = _GREEK_BRACED.sub(lambda m: GREEK[m.group(1)], text)
    for _ in range(3):  # nested scripts and styles, innermost first
        text = _SCRIPT.sub(_script, text)
        text = _STYLE.sub(r"\1", text)
    text = _STYLE_LETTER.sub(r"\1", text)
    text = _COMMAND.sub(r"\1", text)
    for _ in range(3):
        text = _BRACED.sub(r"\1", text)
    return _SPACES.sub(" ", text)


def _script(match: re.Match[str]) -> str:
    """`^{-45}` -> ⁻⁴⁵ and `_{2}` -> ₂ when every character has a script form; else the
    marker stays and the braces go (`_{θ}` -> _θ, `^{pi_sft}` -> ^pi_sft)."""
    marker, body = match.groups()
    body = GREEK.get(body, body)
    table = _SUPERSCRIPT if marker == "^" else _SUBSCRIPT
    scripted = body.translate(table)
    if body and all(char != plain for char, plain in zip(scripted, body)):
        return scripted
    return marker + body
