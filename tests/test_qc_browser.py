"""The QC page in a real browser: headless Chromium loads every picture, logs nothing to
its console, and still does after the QC folder is moved. Skipped only where no
Chromium binary is on PATH (Debian: ``apt-get install -y chromium``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from segtool import qc
from segtool.io import Volume

from qc_page import parse

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium binary on PATH (apt-get install -y chromium)")

#: Injected (into a test-only copy of the page) first thing in <head>: records every error event
#: (a picture that fails to load included) and console.error/warn call, then each picture's size.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'load failed: ' + t.getAttribute('src') : 'error: ' + e.message);
}, true);
['error', 'warn'].forEach(function (level) {
  console[level] = function () { window.__errors.push(level + ': ' + Array.from(arguments).join(' ')); };
});
window.addEventListener('load', function () {
  document.querySelectorAll('img').forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.setAttribute('data-natural', ok ? img.naturalWidth + 'x' + img.naturalHeight : 'broken');
  });
  document.body.setAttribute('data-errors', JSON.stringify(window.__errors));
  document.body.setAttribute('data-checked', 'yes');
});
</script>"""




def chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    command = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        *mode, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the browser's console (Chromium logs it as ':CONSOLE' lines)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


def volume_and_labels(seed: int = 0) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 20.0, (1, 64, 64, 12)).astype(np.float32)
    labels = np.zeros((64, 64, 12), np.int16)
    labels[30:33, 31:33, 5:8] = 1  # a few voxels in a larger field of view
    return Volume(array=array, affine=np.diag([0.5, 0.5, 3.0, 1.0])), labels


def photo_and_labels() -> tuple[Volume, np.ndarray]:
    rgb = np.full((3, 30, 40), 90, np.uint8)
    labels = np.zeros((30, 40), np.uint8)
    labels[10:20, 5:15] = 1
    return Volume(array=rgb, affine=np.eye(4), kind="photo"), labels


def make_report(folder: Path) -> None:
    image, labels = volume_and_labels()
    photo, photo_labels = photo_and_labels()
    row = {"task": "t3d", "input": "a b/sub 01#1.nii.gz", "probabilities": None, "error": None}
    qc.qc_case(folder, image, labels, {1: "gm"}, row, size=96)
    qc.qc_case(folder, photo, photo_labels, {1: "top"}, {"task": "clothing", "input": "p.jpg"}, photo_size=128)
    qc.qc_comparison(folder, image, labels, labels, {1: "gm"}, {"task": "evaluate", "input": "c.nii.gz"}, size=96)
    qc.record_failure(folder, {"task": "t3d", "input": "bad.nii.gz", "error": "unreadable"})


def test_moved_report_loads_every_picture_without_console_errors(tmp_path):
    make_report(tmp_path / "made" / "qc")
    folder = tmp_path / "moved" / "qc"
    shutil.move(str(tmp_path / "made" / "qc"), str(folder))  # relative paths: the page must not care
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert "<script" not in index
    # the real page, as it is: nothing written to the console
    shot = tmp_path / "page.png"
    done = chromium(folder / "index.html", tmp_path / "p1", f"--screenshot={shot}", "--window-size=1200,900")
    assert console_lines(done.stderr) == []
    with Image.open(shot) as picture:
        assert picture.size == (1200, 900)
        assert len(picture.convert("RGB").getcolors(1 << 20) or ()) > 50  # pictures drawn, not a blank page
    # a test-only copy next to it, with the probe, plus one missing picture to prove a failure is caught
    probe = index.replace("<head>", "<head>" + PROBE, 1).replace(
        "</body>", '<img id="missing" src="images/does-not-exist.png" alt="x"></body>'
    )
    (folder / "_probe.html").write_text(probe, encoding="utf-8")
    done = chromium(folder / "_probe.html", tmp_path / "p2", "--dump-dom")
    page = parse(done.stdout)
    assert page.body.get("data-checked") == "yes", done.stdout[:500]
    assert page.body["data-errors"] == '["load failed: images/does-not-exist.png"]'
    assert console_lines(done.stderr) == []
    records = qc.QcReport(folder).read_records()
    assert len(records) == 4 and page.cases == [r["case_id"] for r in records]
    pictures = [img for img in page.images if img.get("id") != "missing"]
    assert len(pictures) == 3 + 1 + 3
    for img in pictures:
        with Image.open(folder / unquote(img["src"])) as png:
            assert img["data-natural"] == f"{png.width}x{png.height}", img
    (missing,) = [img for img in page.images if img.get("id") == "missing"]
    assert missing["data-natural"] == "broken"


def test_console_errors_are_seen(tmp_path):
    """The console check above is not blind: a page that logs an error is caught."""
    page = tmp_path / "noisy.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('qc-broken')</script></body></html>")
    lines = console_lines(chromium(page, tmp_path / "p", "--dump-dom").stderr)
    assert len(lines) == 1 and "qc-broken" in lines[0]
