"""Report records, the scaling-law fit, the HTML report and the dashboard, rendered in a real headless browser."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from unetnas.report import final_points, fit_power_law, frontier_by_compute, rung_records, write_report
from unetnas.search.study import SETTINGS_ATTR

OBJ = ("alignment", "gmacs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _study(tmp_path: Path) -> tuple[str, optuna.Study]:
    """A study shaped like a finished search: rung records in user attrs, COMPLETE/PRUNED trials."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="r", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr(SETTINGS_ATTR, {"objectives": list(OBJ)})
    # (gmacs, tifa at rung 1 or None when pruned at rung 0)
    for i, (gmacs, tifa) in enumerate([(0.1, 0.30), (0.2, 0.45), (0.3, 0.40), (0.4, 0.60), (0.15, None)]):
        t = study.ask()
        t.set_user_attr("gmacs", gmacs)
        t.set_user_attr("params", int(gmacs * 1e7))
        t.set_user_attr("rung_0", {"samples": 320, "train_flops": 1e12, "val_loss": 0.5 - gmacs / 2, "tifa": None})
        if tifa is None:
            t.set_user_attr("rung", 0)
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            continue
        t.set_user_attr("rung_1", {"samples": 960, "train_flops": 3e12 * (1 + i), "val_loss": 0.3, "tifa": tifa})
        t.set_user_attr("rung", 1)
        study.tell(t, [tifa, gmacs])
    return url, study


def test_records_front_and_fit(tmp_path):
    _, study = _study(tmp_path)
    rows = rung_records(study)
    assert len(rows) == 9 and {r["trial"] for r in rows} == {0, 1, 2, 3, 4}
    points = {p["trial"]: p for p in final_points(study, OBJ)}
    assert set(points) == {0, 1, 2, 3}  # the pruned trial has no values
    # (0.3 GMACs, 0.40) is dominated by (0.2, 0.45); the others trade cost for alignment
    assert [t for t, p in sorted(points.items()) if p["pareto"]] == [0, 1, 3]
    front = frontier_by_compute(rows)
    assert [r["tifa"] for r in front] == [0.30, 0.45, 0.60]


def test_power_law_fit_recovers_exponent():
    xs = [1e3, 1e4, 1e5, 1e6]
    a, b = fit_power_law(xs, [0.47 * x**0.02 for x in xs])
    assert a == pytest.approx(0.47, rel=1e-9) and b == pytest.approx(0.02, rel=1e-9)
    assert fit_power_law([1.0], [1.0]) is None and fit_power_law([2.0, 2.0], [1.0, 3.0]) is None


def _screenshot(url: str, out: Path) -> bytes:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1400,900", "--virtual-time-budget=8000",
           f"--screenshot={out}", url]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    return out.read_bytes()


def _distinct_colours(png: bytes) -> int:
    import io

    from PIL import Image

    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_report_html_renders_in_browser(tmp_path):
    _, study = _study(tmp_path)
    path = write_report(study, OBJ, tmp_path / "report.html")
    html = path.read_text()
    assert "Pareto front" in html and "plotly" in html.lower()
    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    png = _screenshot(path.as_uri(), tmp_path / "report.png")
    assert _distinct_colours(png) > 20  # drawn plots, not a blank page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_study_on_loopback(tmp_path):
    url, _ = _study(tmp_path)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "unetnas.cli.app", "dashboard", "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        body = b""
        for _ in range(120):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert b'"study_name": "r"' in body or b'"study_name":"r"' in body
        with socket.socket() as s:  # bound to loopback only, as a server should be by default
            assert s.connect_ex((socket.gethostbyname(socket.gethostname()), port)) != 0 or \
                socket.gethostbyname(socket.gethostname()).startswith("127.")  # fmt: skip
        if CHROMIUM is not None:
            png = _screenshot(f"http://127.0.0.1:{port}/dashboard/studies/1", tmp_path / "dash.png")
            assert _distinct_colours(png) > 20
    finally:
        proc.terminate()
        proc.wait(timeout=20)
