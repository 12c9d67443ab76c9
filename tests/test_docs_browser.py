"""The built documentation opens in a real browser and its figures load.

Needs the HTML built (``sphinx-build -b html docs docs/_build/html``) and Debian's
``chromium``; skipped without them unless ``LENSENHANCE_REQUIRE_DOCS=1`` (set by
``.ci/run`` after it builds the docs), when their absence is a failure.
"""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HTML = Path(__file__).resolve().parents[1] / "docs" / "_build" / "html"
REQUIRED = os.environ.get("LENSENHANCE_REQUIRE_DOCS") == "1"

# Loads a page in an iframe, waits for it, and writes what it found into this page's
# DOM, which chromium --dump-dom prints.
_PROBE = """<!DOCTYPE html>
<html><body><iframe id="page" src="{url}" width="1200" height="900"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", () => {{
  const doc = frame.contentDocument;
  const images = Array.from(doc.images).map(img => ({{
    src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0}}));
  const result = {{title: doc.title, images: images,
                  text: doc.body ? doc.body.innerText.length : 0}};
  document.body.setAttribute("data-result", JSON.stringify(result));
}});
</script></body></html>
"""


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _require(condition, reason):
    if not condition:
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _require((HTML / "index.html").exists(), f"the docs are not built ({HTML})")
    path = _browser()
    _require(path is not None, "no chromium (apt-get install chromium)")
    return path


def _open(browser, page, tmp_path):
    probe = tmp_path / f"probe-{page.stem}.html"
    probe.write_text(_PROBE.format(url=page.as_uri()))
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--allow-file-access-from-files", "--virtual-time-budget=15000",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'data-result="([^"]*)"', run.stdout)
    assert match, f"{page.name}: the page did not load in chromium:\n{run.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_index_opens(browser, tmp_path):
    result = _open(browser, HTML / "index.html", tmp_path)
    assert "lensenhance" in result["title"]
    assert result["text"] > 200
    assert all(image["loaded"] for image in result["images"]), result["images"]


def test_gallery_pages_show_their_figures(browser, tmp_path):
    pages = sorted(p for p in (HTML / "auto_examples").glob("plot_*.html"))
    assert pages, "no gallery pages were built"
    for page in pages:
        result = _open(browser, page, tmp_path)
        figures = [image for image in result["images"] if "sphx_glr_" in image["src"]]
        assert figures, f"{page.name} has no figure"
        missing = [image["src"] for image in figures if not image["loaded"]]
        assert not missing, f"{page.name}: figures that did not load: {missing}"


def test_generated_pages_open(browser, tmp_path):
    for name in ("model_zoo", "benchmarks"):
        result = _open(browser, HTML / "generated" / f"{name}.html", tmp_path)
        assert result["text"] > 1000, name
