"""The course pages as a reader sees them: built, opened in headless Chromium, math and figures checked.

The site is built once (``mkdocs build``, as CI does) and every course page is loaded in Debian's
Chromium through ChromeDriver (Selenium). A page passes when each of its formulas was laid out by
the browser as MathML with a real size, no TeX source is left on the page, each of its images
loaded, and nothing is fetched from another host (a CDN script or web font would leave an offline
reader, and CI, without it). ``FDL_DOCS_SCREENSHOTS=<folder>`` keeps a full-page screenshot of
each.

Needs the browser: ``apt-get install chromium chromium-driver`` (what ``.ci/run`` installs);
without it the test is skipped with that instruction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COURSE = sorted(p.stem for p in (ROOT / "docs" / "course").glob("*.md") if p.stem != "index")
INSTALL = "install Debian's browser and its driver: apt-get install chromium chromium-driver"

# Run in the page: what a reader would see of its formulas and images.
INSPECT = """
const article = document.querySelector("article") || document.body;
const formulas = [...article.querySelectorAll(".arithmatex")];
const unrendered = formulas
  .filter((f) => {
    const math = f.querySelector("math");
    if (!math) return true;
    const box = math.getBoundingClientRect();
    return !(box.width > 0 && box.height > 0);
  })
  .map((f) => f.textContent.slice(0, 80));
const prose = article.cloneNode(true);  // the text a reader reads as prose: code shows TeX on purpose
prose.querySelectorAll("code, pre").forEach((c) => c.remove());
const raw_tex = (prose.textContent.match(/\\\\[(\\[]|\\$\\$/g) || []).length;
const images = [...article.querySelectorAll("img")];
const broken = images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.getAttribute("src"));
const external = [...document.querySelectorAll("link[href], script[src], img[src]")]
  .map((e) => e.getAttribute("href") || e.getAttribute("src"))
  .filter((u) => ["http://", "https://", "//"].some((prefix) => u.startsWith(prefix)));
return {formulas: formulas.length, unrendered, raw_tex, images: images.length, broken, external,
        title: document.title};
"""


def problems(report: dict) -> list[str]:
    """What is wrong with one page, from what ``INSPECT`` saw of it."""
    found = []
    if report["formulas"] == 0:
        found.append("no formula on the page")
    if report["unrendered"]:
        found.append(
            f"{len(report['unrendered'])} formulas not laid out as MathML: {report['unrendered'][:3]}"
        )
    if report["raw_tex"]:
        found.append(f"{report['raw_tex']} TeX delimiters left in the text")
    if report["images"] == 0:
        found.append("no figure on the page")
    if report["broken"]:
        found.append(f"images that did not load: {report['broken']}")
    if report["external"]:
        found.append(f"fetched from another host (the site must read offline): {report['external']}")
    return found


def _driver():
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(f"no headless browser on this machine ({INSTALL})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow  # starts the browser (4-10 s)
def test_the_check_fails_on_raw_tex_and_a_missing_figure(browser, tmp_path):
    """A page whose math was left as TeX and whose figure is missing fails on both counts."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><article><p><span class="arithmatex">\\(x^2\\)</span></p>'
        '<img src="missing.png" alt="a figure"></article>'
        '<script src="https://cdn.example.org/mathjax.js"></script></body></html>'
    )
    browser.get(page.as_uri())
    found = problems(browser.execute_script(INSPECT))
    assert found[0].startswith("1 formulas not laid out as MathML: ['\\\\(x^2\\\\)']"), found
    assert found[1] == "1 TeX delimiters left in the text", found
    assert found[2] == "images that did not load: ['missing.png']", found
    assert found[3] == (
        "fetched from another host (the site must read offline): ['https://cdn.example.org/mathjax.js']"
    ), found


@pytest.mark.slow
def test_every_course_page_renders_its_math_and_figures(browser, site):
    screenshots = os.environ.get("FDL_DOCS_SCREENSHOTS")
    failures = {}
    for name in COURSE:
        browser.get((site / "course" / name / "index.html").as_uri())
        report = browser.execute_script(INSPECT)
        if problems(report):
            failures[name] = problems(report)
        if screenshots:
            Path(screenshots).mkdir(parents=True, exist_ok=True)
            height = browser.execute_script("return document.body.scrollHeight")
            browser.set_window_size(1280, min(int(height), 16000))
            browser.save_screenshot(str(Path(screenshots) / f"{name}.png"))
            browser.set_window_size(1280, 900)
    assert failures == {}
    assert COURSE, "no course pages found"
