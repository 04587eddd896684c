"""The built site (``make docs`` -> docs/_build/html) opened in a real browser.

Headless Chromium loads the index, an API page (SmoothGrad's class), the search page (its
JavaScript runs: the search index loads and finds SmoothGrad) and, once docs/tutorials/ exists
in the source tree, the tutorials' index; one screenshot is checked non-blank; and every
internal link (``href`` and ``src`` of every built page) resolves to a file of the site, its
``#fragment`` to an id of that file.

These tests need the built site and Chromium: under ``make test`` they skip without them (and
say why). ``make docs-check`` (CI, after ``make docs``) sets ``CAPTUM_SMOOTH_REQUIRE_SITE=1``,
which turns each skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "docs" / "_build" / "html"
REQUIRED = os.environ.get("CAPTUM_SMOOTH_REQUIRE_SITE") == "1"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def _need(present: object, why: str) -> None:
    """Skip without ``present``; fail instead where CI requires the site."""
    if not present:
        (pytest.fail if REQUIRED else pytest.skip)(
            why + " (CAPTUM_SMOOTH_REQUIRE_SITE=1)" * REQUIRED
        )


def _pages() -> list[tuple[str, str]]:
    """(path, what its DOM must contain) of the pages opened in the browser."""
    pages = [
        ("index.html", "<h1>captum-smooth"),
        ("api/captum_smooth.html", 'id="captum_smooth.SmoothGrad"'),
        ("guarantees.html", "<h1>Guarantees"),
    ]
    if (ROOT / "docs" / "tutorials").is_dir():  # the tutorials landed: the site must show them
        pages.append((_tutorials_index(), "<h1>"))
    return pages


def _tutorials_index() -> str:
    """The built page of the tutorials' entry in docs/index.rst's toctree (``tutorials/...``)."""
    index = (ROOT / "docs" / "index.rst").read_text()
    entries = re.findall(r"^\s+(tutorials/\S+)\s*$", index, re.M)
    return entries[0] + ".html" if entries else "tutorials (not in docs/index.rst's toctree)"


@pytest.fixture(scope="module")
def site() -> Path:
    _need((SITE / "index.html").is_file(), f"no built site at {SITE} (run make docs)")
    return SITE


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    _need(found, "no chromium on PATH (make docs-check installs Debian's)")
    return str(found)


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The site served on a free localhost port, from a thread, for the module's tests."""
    handler = partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _chromium(chromium: str, tmp: Path, *args: str) -> str:
    """Chromium's stdout for ``args``, with a fresh profile in ``tmp``."""
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(("path", "expected"), _pages(), ids=[p for p, _ in _pages()])
def test_the_browser_renders_the_page(
    chromium: str, server: str, tmp_path: Path, path: str, expected: str
) -> None:
    assert (SITE / path).is_file(), f"the site has no {path}"
    dom = _chromium(chromium, tmp_path, "--dump-dom", server + path)
    assert "<title>" in dom and expected in dom, dom[:2000]


def test_the_search_page_runs_its_javascript(chromium: str, server: str, tmp_path: Path) -> None:
    # The results exist only once searchtools.js has loaded searchindex.js and searched.
    url = server + "search.html?q=SmoothGrad"
    dom = _chromium(chromium, tmp_path, "--virtual-time-budget=15000", "--dump-dom", url)
    assert (
        "Search finished" in dom and 'href="api/captum_smooth.html#captum_smooth.SmoothGrad"' in dom
    )


def test_a_screenshot_is_not_blank(chromium: str, server: str, tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    png = tmp_path / "index.png"
    _chromium(chromium, tmp_path, "--window-size=1200,900", f"--screenshot={png}", server)
    with image_module.open(png) as image:
        assert image.size == (1200, 900)
        gray = image.convert("L")
        colours = gray.getcolors(maxcolors=256) or []
        dark = sum(count for count, level in colours if level < 128)
    # Text and the demo picture: many grey levels, and a share of dark pixels a blank page lacks.
    assert len(colours) > 32 and dark > 0.005 * 1200 * 900, (len(colours), dark)


# ------------------------------------------------------------------------ internal links


class _Links(HTMLParser):
    """The ``href``/``src`` values and the ids (``id``, ``name``) of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value)
            elif name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _viewcode(page: Path, site: Path) -> bool:
    """A source page of sphinx.ext.viewcode: its "[docs]" back-links name each object under the
    first module name one object of that source file was documented under (a viewcode
    limitation: ``captum_smooth.ErrorReducer`` where the page says ``captum_smooth.core``), so
    their fragments are not checked; their files are."""
    return page.relative_to(site).parts[0] == "_modules"


def _broken_links(site: Path) -> list[str]:
    """``page: link`` for every internal link that names no file (or no id) of the site."""
    pages = {p: _parse(p) for p in sorted(site.rglob("*.html"))}
    broken = []
    for page, parsed in pages.items():
        base = "file://" + page.as_posix()
        for link in parsed.links:
            parts = urlsplit(urljoin(base, link))
            if parts.scheme != "file":
                continue  # external (https, mailto, data, javascript): not the site's
            target = Path(unquote(parts.path))
            target = target / "index.html" if target.is_dir() else target
            inside = target.resolve().is_relative_to(site.resolve())
            if not inside or not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
            elif parts.fragment and target.suffix == ".html" and not _viewcode(page, site):
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such id)")
    return broken


def test_every_internal_link_resolves(site: Path) -> None:
    assert len(list(site.rglob("*.html"))) > 10
    assert _broken_links(site) == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<a href="b.html#x">ok</a> <img src="missing.png"> <a href="b.html#nope">id</a>'
        ' <a href="https://captum.ai">external</a> <a href="#top" id="top">self</a>'
    )
    (tmp_path / "b.html").write_text('<p id="x">b</p> <a href="../outside.html">up</a>')
    (tmp_path / "outside.html").write_text("")  # exists, but the link from b.html leaves site/
    assert sorted(_broken_links(tmp_path)) == [
        "b.html: ../outside.html",
        "index.html: b.html#nope (no such id)",
        "index.html: missing.png",
    ]
