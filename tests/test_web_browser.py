"""The digest's links in a real browser: Playwright drives Debian's headless Chromium
(/usr/bin/chromium; no browser is ever downloaded) against a real `newsletter serve`.

The delivered HTML is opened from a file, as a mail client would show it; the test clicks the
footer's Unsubscribe link, presses the page's button, undoes it, clicks "More like this" (the
page's script sends the vote) and, with scripts off, "Less like this" and its button, and
opens the view-in-browser page. After each step it checks the store. At 375 px and 800 px, light
and dark, every page must fit the width and keep its text readable (WCAG contrast ≥ 4.5), and
no Content-Security-Policy violation may be reported; screenshots go to artifacts/screenshots/.

Chromium is skipped with a reason when absent, unless CI is set (there it is a failure).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_servers import SmtpServer
from web_servers import NOW, Web, html_part, running_web

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
MIN_CONTRAST = 4.5
ADA_KEY = "ada@example.org"

# Per page: the widest box against the viewport, and the lowest contrast of visible text
# (own text nodes) against the first opaque background behind it.
MEASURE = """() => {
  const rgba = t => { const p = t.match(/[\\d.]+/g).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const backdrop = e => { for (; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor); if (c.a > 0) return c; }
                          return rgba(getComputedStyle(document.documentElement).backgroundColor); };
  let minContrast = 99, worst = '';
  for (const e of document.body.querySelectorAll('*')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !e.getClientRects().length) continue;
    const s = getComputedStyle(e);
    if (s.display === 'none' || s.visibility === 'hidden') continue;
    const box = e.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) continue;
    const l1 = lum(rgba(s.color)), l2 = lum(backdrop(e));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < minContrast) { minContrast = ratio; worst = e.textContent.trim().slice(0, 40); }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
          minContrast: Math.round(minContrast * 100) / 100, worst,
          dark: matchMedia('(prefers-color-scheme: dark)').matches};
}"""


def chromium() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed; it is in the `test` extra")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); the browser checks need it")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    binary = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def web(tmp_path: Path, smtp: SmtpServer) -> Iterator[Web]:
    with running_web(tmp_path, smtp) as running:
        assert running.send().count("sent") == 2
        yield running


def check_page(page: object, shot: str) -> None:
    """Fits the width, readable, in the scheme asked for; then a full-page screenshot."""
    figures = page.evaluate(MEASURE)  # type: ignore[attr-defined]
    assert figures["scrollWidth"] <= figures["innerWidth"], (shot, figures)
    assert figures["minContrast"] >= MIN_CONTRAST, (shot, figures)
    page.screenshot(path=str(SCREENSHOTS / f"{shot}.png"), full_page=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 800])
def test_a_reader_unsubscribes_undoes_and_votes_from_the_delivered_digest(
    browser: object, web: Web, tmp_path: Path, width: int, scheme: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    message = web.digest_for(ADA_KEY)
    digest_file = tmp_path / "digest.html"
    digest_file.write_text(html_part(message), encoding="utf-8")
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)  # type: ignore[attr-defined]
    violations: list[str] = []
    page = context.new_page()
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    name = f"serve-{width}-{scheme}"

    # The footer's Unsubscribe link: the page changes nothing until the button is pressed.
    page.goto(digest_file.as_uri())
    page.get_by_role("link", name="Unsubscribe", exact=True).click()
    page.wait_for_url(f"{web.base}/u/*")
    assert page.get_by_role("heading").inner_text() == "Unsubscribe?"
    assert web.store.unsubscribed_addresses() == set()
    check_page(page, f"{name}-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert web.store.unsubscribed_addresses() == {ADA_KEY}
    check_page(page, f"{name}-unsubscribed")
    page.get_by_role("button", name="Subscribe again").click()
    page.get_by_role("heading", name="You are subscribed again").wait_for()
    assert web.store.unsubscribed_addresses() == set()

    # "More like this": the page's script (allowed by its nonce) sends the vote by itself.
    recorded = web.store.digest_for("Ada@example.org", NOW.date())
    assert recorded is not None
    page.goto(digest_file.as_uri())
    page.get_by_role("link", name="More like this").first.click()
    page.get_by_role("heading", name="Thanks").wait_for()
    assert [(v.paper_id, v.vote) for v in web.store.votes(ADA_KEY)] == [(recorded.paper_ids[0], 1)]
    check_page(page, f"{name}-voted")

    # The digest in the browser: the same papers, readable, nothing blocked.
    page.goto(digest_file.as_uri())
    page.get_by_role("link", name="View in your browser").click()
    page.wait_for_url(f"{web.base}/d/*")
    first_title = web.store.papers_by_ids(recorded.paper_ids[:1])[0].title
    assert first_title[:40] in page.inner_text("body")
    check_page(page, f"{name}-view")
    assert violations == []
    context.close()

    # Without scripts, "Less like this" shows its one button and votes only when pressed.
    quiet = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, java_script_enabled=False)  # type: ignore[attr-defined]
    page = quiet.new_page()
    page.goto(digest_file.as_uri())
    page.get_by_role("link", name="Less like this").first.click()
    page.get_by_role("heading", name="Fewer papers like this?").wait_for()
    assert [(v.paper_id, v.vote) for v in web.store.votes(ADA_KEY)] == [(recorded.paper_ids[0], 1)]
    check_page(page, f"{name}-feedback")
    page.get_by_role("button", name="Yes, fewer like this").click()
    page.get_by_role("heading", name="Thanks").wait_for()
    assert [(v.paper_id, v.vote) for v in web.store.votes(ADA_KEY)] == [(recorded.paper_ids[0], -1)]
    quiet.close()
