"""The HTML report renders in headless Chromium with every figure decoded.

Chromium is Debian's ``chromium`` package (tests/support/install_chromium.sh installs
it). Without it the test is skipped, unless SPLINE_NAS_REQUIRE_CHROMIUM=1 is set, in
which case it fails. The screenshot is kept under $SPLINE_NAS_ARTIFACTS if set, else
under the test's tmp_path; the test prints its path.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from orchestrator import report

SPACE = """\
parameters:
  width: {type: int, low: 8, high: 128, log: true}
  depth: {type: int, low: 1, high: 9, step: 2}
  drop: {type: float, low: 0.0, high: 0.5}
objective: {name: top1}
"""

# Initial design of the 3-D space (corners, centre, axis points) plus three more points.
POINTS = [
    (128, 9, 0.5),
    (8, 1, 0.0),
    (32, 5, 0.25),
    (8, 9, 0.5),
    (128, 1, 0.0),
    (128, 1, 0.5),
    (8, 9, 0.0),
    (128, 9, 0.0),
    (8, 1, 0.5),
    (45, 5, 0.2),
    (40, 7, 0.1),
    (64, 3, 0.3),
]

# Flags that keep Chromium off the network and away from any user profile.
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def _top1(width, depth, drop):
    return 95.0 - 3.0 * (np.log2(width) - 5.5) ** 2 - 0.5 * (depth - 6) ** 2 - 20 * drop**2


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed; run tests/support/install_chromium.sh as root"
        if os.environ.get("SPLINE_NAS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"SPLINE_NAS_REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    return path


def _run(chromium, profile, *args):
    completed = subprocess.run(
        [chromium, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_html_report_renders_in_chromium(tmp_path):
    chromium = _chromium()
    (tmp_path / "space.yaml").write_text(SPACE)
    rows = [f"{w},{d},{p},{_top1(w, d, p):.4f}" for w, d, p in POINTS]
    (tmp_path / "points.csv").write_text("width,depth,drop,top1\n" + "\n".join(rows) + "\n")
    out = tmp_path / "report"
    assert (
        report.main(
            [
                "--space",
                str(tmp_path / "space.yaml"),
                "--measurements",
                str(tmp_path / "points.csv"),
                "--out",
                str(out),
                "--pair",
                "width,drop",
            ]
        )
        == 0
    )
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == 5  # convergence, 3 projections, slices
    url = (out / "report.html").resolve().as_uri()

    dom = _run(
        chromium, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", url
    )
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:2000]
    attributes = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(0)))
    assert attributes.get("data-images-loaded") == "all", attributes
    assert attributes["data-image-count"] == str(len(figures))
    assert attributes["data-images-decoded"] == str(len(figures))

    artifacts = Path(os.environ.get("SPLINE_NAS_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report_screenshot.png"
    screenshot.unlink(missing_ok=True)
    _run(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        "--window-size=1200,2000",
        url,
    )
    print(f"screenshot of the rendered report: {screenshot}")
    image = matplotlib.image.imread(screenshot)
    assert image.shape[:2] == (2000, 1200)
    # The page shows text, tables and a figure, not a blank or error page.
    assert len(np.unique(image.reshape(-1, image.shape[-1])[::5], axis=0)) > 200
