"""Open the HTML report in headless Chromium (Debian package ``chromium``).

- a screenshot is taken (and must be a non-empty PNG of the window size); with
  ``REPORT_SCREENSHOT_DIR`` set it is also copied there (e.g. a CI artefact);
- the browser's console log must stay empty: the page has no script, so any
  console line (an error, a blocked resource, an exception) is a failure. A
  control page checks first that this Chromium does log console errors;
- a test-only copy of the page, with a small load-time script added, reports
  how many ``<img>`` decoded (``naturalWidth > 0``): all of them must; among them the
  detection gallery's 32 pictures (8 images x ground truth and the three detectors)
  and the loss curves.

Without Chromium the test is skipped, except under CI (``CI`` set), where it fails.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught", re.IGNORECASE)
IMG_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var d = document.createElement("div");
  d.id = "img-check";
  var gallery = Array.prototype.slice.call(document.querySelectorAll("figure.gallery img"));
  var shown = gallery.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var panels = Array.prototype.slice.call(document.querySelectorAll("figure.gallery figcaption"))
    .map(function (c) { return c.textContent.split(":")[0]; });
  var curves = document.querySelector("#fig-loss_curves_synthetic img");
  d.textContent = "images=" + imgs.length + " broken=" + broken.length + " gallery=" + gallery.length +
    " gallery_decoded=" + shown.length + " detectors=" + ["R-CNN", "Fast R-CNN", "Faster R-CNN"].filter(
      function (n) { return panels.indexOf(n) >= 0; }).length +
    " curves=" + (curves && curves.complete ? curves.naturalWidth : 0);
  document.body.appendChild(d);
});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium")
                                       else None)
    if exe is None:
        msg = "chromium not installed (Debian: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    return exe


def _run(exe: str, tmp: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{name}"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def test_report_in_headless_chromium(html_report, tmp_path):
    exe = _chromium()
    page = html_report[0]
    html = page.read_text(encoding="utf-8")
    n_images = len(re.findall(r"<img\s", html))
    assert n_images >= 6

    # 0. control: this Chromium reports console errors on stderr, so silence below means something
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><script>console.error("control-error");'
                       "</script></body></html>", encoding="utf-8")
    res = _run(exe, tmp_path, "control", "--dump-dom", control.as_uri())
    assert any("control-error" in line for line in _console_lines(res.stderr)), res.stderr[-3000:]

    # 1. screenshot of the real page; nothing logged to the console
    shot = tmp_path / "shot.png"
    res = _run(exe, tmp_path, "shot", f"--screenshot={shot}", "--window-size=1280,2000",
               page.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    assert _console_lines(res.stderr) == [], res.stderr[-3000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as im:
        im.load()
        assert im.size == (1280, 2000)
        colours = im.convert("L").getextrema()
        assert colours[0] < 100 < colours[1]  # not a blank page
    if os.environ.get("REPORT_SCREENSHOT_DIR"):
        dest = Path(os.environ["REPORT_SCREENSHOT_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / "report-screenshot.png")

    # 2. every image decodes in the browser (test-only copy with a load-time check)
    checked = page.parent / "index.checked.html"
    checked.write_text(html.replace("</body>", IMG_CHECK + "</body>"), encoding="utf-8")
    try:
        res = _run(exe, tmp_path, "dom", "--dump-dom", "--virtual-time-budget=10000",
                   checked.as_uri())
    finally:
        checked.unlink()
    assert res.returncode == 0, res.stderr[-3000:]
    assert _console_lines(res.stderr) == [], res.stderr[-3000:]
    m = re.search(r'<div id="img-check">images=(\d+) broken=(\d+) gallery=(\d+) gallery_decoded=(\d+) '
                  r'detectors=(\d+) curves=(\d+)</div>', res.stdout)
    assert m, res.stdout[-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (n_images, 0)
    # the gallery: 8 test images x (ground truth + R-CNN + Fast R-CNN + Faster R-CNN), every picture decoded
    assert (int(m.group(3)), int(m.group(4)), int(m.group(5))) == (32, 32, 3)
    assert int(m.group(6)) > 600  # the loss curves figure decoded
