"""The rendered digest in a real browser: Debian's headless Chromium, at 375 px and 800 px.

Each digest is shown in iframes of exactly those widths (a headless window cannot be made
narrower than 500 px, an iframe can), in the light and in the dark colour scheme
(`--force-dark-mode` makes `prefers-color-scheme: dark` match). A script measures, per frame:
the document's scrollWidth against the frame's width (horizontal overflow), and the contrast
of every piece of visible text against the background actually painted behind it (WCAG
ratio, so no text disappears in either scheme). One Chromium run per digest and scheme dumps
the DOM with the figures and saves a screenshot of all frames to artifacts/screenshots/.

Chromium is skipped with a reason when absent, unless CI is set: there it is a failure
(`.ci/run` installs it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from digests import REPO_ROOT, example_picks, hostile_picks, render

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
WIDTHS = (375, 800)
SCHEMES = ("light", "dark")
MIN_CONTRAST = 4.5  # WCAG AA for body text
WINDOW = (16 + WIDTHS[0] + 16 + WIDTHS[1] + 16 + 120 + 16, 5200)
# A control frame in every page: it must be caught overflowing and hard to read, or the
# measurer itself is broken and the checks above it prove nothing.
CONTROL_WIDTH = 120
CONTROL_PAGE = (
    '<body style="margin:0;background:#ffffff"><div style="width:300px;color:#000">wide</div>'
    '<p style="color:#999999;background:#aaaaaa">faint</p></body>'
)
TIMEOUT_SECONDS = 60
# No network here: without these Chromium hangs on connection attempts.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--disable-extensions", "--mute-audio",
)
_RESULT = re.compile(r'<pre id="measure"[^>]*>(.*?)</pre>', re.DOTALL)

MEASURE_SCRIPT = """
function rgba(text) {
  const parts = text.match(/[\\d.]+/g).map(Number);
  return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
}
function luminance(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
}
function backdrop(element, win) {
  for (let e = element; e; e = e.parentElement) {
    const c = rgba(win.getComputedStyle(e).backgroundColor);
    if (c.a > 0) return c;
  }
  return null;
}
function measure(frame) {
  const win = frame.contentWindow, doc = frame.contentDocument, root = doc.documentElement;
  let minContrast = 99, worst = '', unbacked = [];
  for (const e of doc.body.querySelectorAll('*')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !e.getClientRects().length) continue;
    const style = win.getComputedStyle(e);
    if (style.visibility === 'hidden' || style.display === 'none' || Number(style.opacity) === 0) continue;
    const box = e.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) continue;
    const bg = backdrop(e, win);
    if (!bg) { unbacked.push(e.textContent.trim().slice(0, 40)); continue; }
    const l1 = luminance(rgba(style.color)), l2 = luminance(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < minContrast) { minContrast = ratio; worst = e.textContent.trim().slice(0, 40) + ' ' + style.color + ' on ' + win.getComputedStyle(e).backgroundColor; }
  }
  const overflowing = [...doc.body.querySelectorAll('*')]
    .filter(e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.right > win.innerWidth + 0.5; })
    .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
  frame.style.height = root.scrollHeight + 'px';
  return {width: Number(frame.dataset.width), innerWidth: win.innerWidth, scrollWidth: root.scrollWidth,
          overflowing, minContrast: Math.round(minContrast * 100) / 100, worst, unbacked,
          dark: win.matchMedia('(prefers-color-scheme: dark)').matches};
}
window.addEventListener('load', () => {
  const results = [...document.querySelectorAll('iframe')].map(measure);
  const pre = document.createElement('pre');
  pre.id = 'measure'; pre.style.display = 'none'; pre.textContent = JSON.stringify(results);
  document.body.appendChild(pre);
});
"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium); the browser checks need it")


def stage_page(digest_html: str) -> str:
    """A page showing the digest in one iframe per width, side by side, with the measurer."""
    frames = "".join(
        f'<iframe data-width="{width}" width="{width}" height="600" '
        f'srcdoc="{html.escape(source, quote=True)}"></iframe>'
        for width, source in [(w, digest_html) for w in WIDTHS] + [(CONTROL_WIDTH, CONTROL_PAGE)]
    )
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>"
        "body{margin:0;padding:16px;background:#7a7a7a;display:flex;gap:16px;align-items:flex-start}"
        "iframe{border:0;display:block}</style></head>"
        f"<body>{frames}<script>{MEASURE_SCRIPT}</script></body></html>"
    )


def run_chromium(binary: str, page: Path, screenshot: Path, scheme: str) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--dump-dom", f"--screenshot={screenshot}",
        ]
        if scheme == "dark":
            command.append("--force-dark-mode")
        done = subprocess.run(
            [*command, page.as_uri()], capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
        )
    found = _RESULT.search(done.stdout)
    assert found, f"no measurements from chromium (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def measurements(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[dict[str, object]]]:
    binary = chromium()
    digests = {"digest": render(example_picks()).html, "hostile": render(hostile_picks()).html}
    staging = tmp_path_factory.mktemp("browser")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    jobs = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, digest_html in digests.items():
            page = staging / f"{name}.html"
            page.write_text(stage_page(digest_html), encoding="utf-8")
            for scheme in SCHEMES:
                shot = SCREENSHOTS / f"{name}-{scheme}.png"
                jobs[(name, scheme)] = pool.submit(run_chromium, binary, page, shot, scheme)
        results = {key: job.result() for key, job in jobs.items()}
    report = {f"{name}-{scheme}": frames for (name, scheme), frames in results.items()}
    (SCREENSHOTS / "measurements.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return results


CASES = [(name, scheme) for name in ("digest", "hostile") for scheme in SCHEMES]


@pytest.mark.parametrize(("name", "scheme"), CASES)
def test_nothing_overflows_horizontally(measurements: dict, name: str, scheme: str) -> None:
    frames = measurements[(name, scheme)][: len(WIDTHS)]
    assert [frame["width"] for frame in frames] == list(WIDTHS)
    for frame in frames:
        assert frame["innerWidth"] == frame["width"]
        assert frame["scrollWidth"] <= frame["innerWidth"], frame
        assert frame["overflowing"] == [], frame


@pytest.mark.parametrize(("name", "scheme"), CASES)
def test_every_text_is_readable_on_its_background(measurements: dict, name: str, scheme: str) -> None:
    for frame in measurements[(name, scheme)][: len(WIDTHS)]:
        assert frame["dark"] is (scheme == "dark")  # the scheme really was emulated
        assert frame["unbacked"] == [], frame
        assert frame["minContrast"] >= MIN_CONTRAST, frame


@pytest.mark.parametrize(("name", "scheme"), CASES)
def test_the_measurer_catches_overflow_and_faint_text(measurements: dict, name: str, scheme: str) -> None:
    control = measurements[(name, scheme)][-1]
    assert control["width"] == CONTROL_WIDTH
    assert control["scrollWidth"] > CONTROL_WIDTH and control["overflowing"]
    assert control["minContrast"] < MIN_CONTRAST
