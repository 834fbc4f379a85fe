"""The documentation site as a reader meets it: built with --strict, every page opened in headless Chromium
(Debian's chromium and chromium-driver, against the built files served on 127.0.0.1), no console error,
every internal link and image resolving, and the home page's screenshot saved as site/screenshot.png."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs")
webdriver = pytest.importorskip("selenium.webdriver")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = ROOT / "site" / "screenshot.png"

pytestmark = [pytest.mark.docs, pytest.mark.slow]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return site


@pytest.fixture(scope="module")
def served_site(built_site):
    handler = functools.partial(QuietHandler, directory=str(built_site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would bury the test's own output
        pass


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI") == "true":  # CI installs them (.ci/run): their absence there is a failure
            pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def page_urls(site: Path, base: str) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")
    return [f"{base}/{page}" for page in pages]


def target_problem(site: Path, url: str) -> str | None:
    """Why a same-site link or image URL does not resolve in the built files, or None."""
    parts = urlsplit(url)
    path = site / unquote(parts.path).lstrip("/")
    if parts.path.endswith("/") or path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return "no such file"
    if parts.fragment and path.suffix == ".html":
        anchor = re.escape(unquote(parts.fragment))
        if not re.search(rf'id="{anchor}"', path.read_text(encoding="utf-8")):
            return f"no element with id {parts.fragment!r}"
    return None


def test_every_page_opens_without_console_errors_and_every_link_and_image_resolves(built_site, served_site,
                                                                                  browser):
    urls = page_urls(built_site, served_site)
    problems, links_checked, images_checked = [], 0, 0
    for url in urls:
        browser.get(url)
        for entry in browser.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{url}: console error: {entry['message']}")
        links = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
        for link in {link for link in links if link.startswith(served_site)}:
            links_checked += 1
            if problem := target_problem(built_site, link[len(served_site):]):
                problems.append(f"{url}: link {link}: {problem}")
        images = browser.execute_script(
            "return [...document.images].map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])")
        for source, shown in images:
            images_checked += 1
            if not shown:
                problems.append(f"{url}: image {source} not shown")
    print(f"{len(urls)} pages, {links_checked} internal links, {images_checked} images checked")
    assert len(urls) >= 20
    assert images_checked >= 5  # the results pages' plots: a check that saw no image checked nothing
    assert not problems, "\n".join(problems)


def test_the_home_page_screenshot_is_saved_into_the_site(served_site, browser):
    browser.get(f"{served_site}/index.html")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000  # a blank page's PNG is a few hundred bytes


def test_the_ablation_page_lists_every_ablation_config_with_its_parameter_count(built_site):
    page = (built_site / "ablations" / "index.html").read_text(encoding="utf-8")
    configs = sorted((ROOT / "conf" / "ablation").rglob("*.yaml"))
    assert configs
    for config in configs:
        name = config.relative_to(ROOT / "conf" / "ablation").with_suffix("").as_posix()
        assert f"<code>{name}</code>" in page, f"{name} missing from the generated ablation table"
    assert "94,950,334" in page  # Life-IQA at its paper setting, counted at build time
