"""report.html in headless Chromium: every image decodes and the console stays clean.

The report has no JavaScript; the test loads a copy of it with one probe script appended that
writes each image's naturalWidth into the page, and reads the result with ``--dump-dom``.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.browser

PROBE = """<script>
window.addEventListener('load', () => {
  const widths = Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = 'IMAGES ' + widths.join(',');
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "chromium not installed: run `make browser` (apt-get install chromium) to enable this test"
    )


def _headless(chromium: str, profile, *args: str, check: bool = False):
    """Run headless Chromium as CI can (root, no network) with a fresh profile folder."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_report_opens_offline_with_every_image(one_epoch_run, tmp_path):
    chromium = _chromium()
    _, out = one_epoch_run
    html = (out / "report.html").read_text(encoding="utf-8")
    n_images = html.count("<img ")
    assert n_images >= 20
    # The probe copy sits beside report.html (the images are embedded, so nothing else is needed)
    # in this test's own folder, leaving the shared run folder as it was.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = _headless(
        chromium,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    match = re.search(r"<pre id=\"probe\">IMAGES ([\d,]*)</pre>", proc.stdout)
    assert match, f"the page did not load: {proc.stderr[-2000:]}"
    widths = [int(w) for w in match.group(1).split(",") if w]
    assert len(widths) == n_images
    assert all(w > 0 for w in widths), f"images that did not decode: {widths}"
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    screenshot = tmp_path / "report.png"
    _headless(
        chromium,
        tmp_path / "profile2",
        f"--screenshot={screenshot}",
        "--window-size=1400,3000",
        (out / "report.html").as_uri(),
        check=True,
    )
    assert screenshot.stat().st_size > 10_000
