"""The built book read as a person would: every page in headless Chromium (Debian's package, driven by
Playwright for Python). No console errors, every image loads, math is typeset, every internal link
resolves, no NaN in a table, every figure captioned, no table cell cut short, no table, image or equation wider than the text
column (equations also on a 400 px phone screen); a full-page screenshot of each page is saved to
``_build/screenshots`` for a person to look at. Runs after ``make book`` (``make browser``)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# as the machine's notes advise: no background networking on a closed network, a fresh profile
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = sorted((HTML / "book").glob("*.html"))
ARTICLE = "article.bd-article"
WIDER_THAN_COLUMN = """sel => { const a = document.querySelector('article.bd-article'), w = a.getBoundingClientRect().width;
  return [...a.querySelectorAll(sel)].filter(e => e.getBoundingClientRect().width > w + 1)
    .map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().width) + ' px: ' + (e.innerText || '').slice(0, 50)); }"""


# the words of the given elements that the layout splits over two lines (a word: letters between spaces, "/" and "-",
# where a line may break); each word's text range has one box per line it spans
BROKEN_WORDS = """els => els.flatMap(el => { const out = [], walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) { for (const m of n.data.matchAll(/[^\\s\\/\\-]+/g)) {
    const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
    if ([...r.getClientRects()].filter(b => b.width > 0).length > 1) out.push(m[0]); } } return out; })"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does: apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def test_the_book_was_built():
    assert PAGES, f"no pages under {HTML / 'book'}: run `make book` first"


def _local_target(href: str) -> tuple[Path, str] | None:
    url = urlparse(href)
    return (Path(unquote(url.path)), url.fragment) if url.scheme == "file" else None


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_a_page_reads_cleanly(browser, path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)", timeout=30_000)
    page.evaluate("() => window.MathJax && window.MathJax.startup.promise")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{path.stem}.png"), full_page=True)
    article = ARTICLE

    assert not errors, f"console errors on {path.name}: {errors}"
    broken = page.eval_on_selector_all(f"{article} img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"images that did not load on {path.name}: {broken}"
    text = page.inner_text(article)
    assert "$$" not in text and not re.search(r"\\\\(frac|phi|lambda)\b", text), f"raw (untypeset) math on {path.name}"
    cells = page.eval_on_selector_all(f"{article} table td", "tds => tds.map(t => t.innerText.trim())")
    assert not [c for c in cells if re.search(r"\bNaN\b", c)], f"NaN in a table on {path.name}"
    assert not [c for c in cells if c.endswith(("...", "…"))], f"a table cell cut short on {path.name}"
    uncaptioned = page.eval_on_selector_all(
        f"{article} img",
        "imgs => imgs.filter(i => !(i.closest('figure') && i.closest('figure').querySelector('figcaption'))).map(i => i.alt || i.src)",
    )
    assert not uncaptioned, f"figures without a caption on {path.name}: {uncaptioned[:3]}"
    for href in page.eval_on_selector_all(f"{article} a[href]", "as => as.map(a => a.href)"):
        target = _local_target(href)
        if target is None:
            continue
        file, fragment = target
        assert file.is_file(), f"{path.name} links to a missing page {file}"
        if fragment and file.suffix == ".html":
            assert f'id="{fragment}"' in file.read_text(), f"{path.name} links to a missing anchor {href}"
    wide = page.evaluate(WIDER_THAN_COLUMN, "table, img, mjx-container, mjx-container > mjx-math")  # display math: its content
    assert not wide, f"wider than the text column on {path.name}: {wide}"
    broken_headers = page.eval_on_selector_all(f"{article} table th", BROKEN_WORDS)
    assert not broken_headers, f"table headers broken inside a word on {path.name}: {broken_headers[:5]}"
    page.set_viewport_size({"width": 400, "height": 800})
    wide = page.evaluate(WIDER_THAN_COLUMN, "mjx-container")
    assert not wide, f"equations wider than a 400 px screen on {path.name}: {wide}"
    page.close()


def test_the_first_page_opens_with_every_papers_outcome(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((HTML / "book" / "intro.html").as_uri(), wait_until="load")
    tables = page.eval_on_selector_all(
        f"{ARTICLE} table",
        """ts => ts.map(t => ({
        headers: [...t.querySelectorAll('th')].map(h => h.innerText.trim()),
        rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim()))}))""",
    )
    outcomes = next((t for t in tables if {"paper", "distance", "verdict", "deciding claim"} <= set(t["headers"])), None)
    assert outcomes is not None, "the intro has no outcomes table"
    column = outcomes["headers"].index("verdict")
    assert [r[0] for r in outcomes["rows"] if r[0]] == ["BCT", "FCT", "UniBCT", "BiCT"]  # each paper, in the book's order
    assert {r[column] for r in outcomes["rows"]} <= {"reproduced", "partly reproduced", "not reproduced"}
    links = page.eval_on_selector_all(f"{ARTICLE} a[href]", "as => as.map(a => a.getAttribute('href'))")
    assert any(h.startswith("compare.html") for h in links), "the intro does not link the comparison"
    page.close()
