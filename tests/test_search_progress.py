"""`unetnas search` with stdout redirected to a file: plain timestamped progress lines appear while the search runs
(one per rung event, a budget line every $UNETNAS_PROGRESS_INTERVAL_S seconds), hints are whole commands on one
line naming the paths actually used, samples.png lands in scored trial folders, and the study's metric names are
its objectives. A tiny latent search (tiny VAE + BERT data, CLIPScore with a tiny CLIP) run as a subprocess."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import optuna
from tiny_models import LATENT_BUDGET, tiny_clip, tiny_latent_search

from tests.helpers import clean_env, cli_args

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (rung-start|rung-done|trial|budget|note) ")


def test_progress_lines_appear_while_the_search_runs(tmp_path) -> None:
    f = tiny_latent_search(tmp_path)
    clip = tiny_clip(tmp_path / "clip")
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\na green circle\n")
    db = tmp_path / "runs" / "prog" / "study.db"
    db.parent.mkdir(parents=True)
    log = tmp_path / "search.log"
    argv = [
        sys.executable,
        "-m",
        "unetnas.cli.app",
        *cli_args(
            "search",
            budget=LATENT_BUDGET,
            data=f["data"],
            space=f["space"],
            recipe=f["recipe"],
            storage=f"sqlite:///{db}",
            study="prog",
            proxy="clipscore",
            clip=clip,
            questions=tmp_path / "prompts.txt",
            vae=f["vae"],
        ),
    ]
    env = clean_env(UNETNAS_PROGRESS_INTERVAL_S="0.2", COLUMNS="60")
    seen_running: list[str] = []
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline:
                lines = [ln for ln in log.read_text().splitlines() if LINE.match(ln)]
                if any(" rung-start " in ln for ln in lines) and proc.poll() is None:
                    seen_running = lines  # read while the process was still running (training its first rung)
                    break
                time.sleep(0.01)
            _, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert seen_running, "no rung-start line appeared before the search ended"
    assert any(" rung-start trial=0 rung=0 " in ln for ln in seen_running)
    assert any(" note " in ln and "clipscore" in ln for ln in seen_running)  # the proxy, named at the start
    lines = [ln for ln in log.read_text().splitlines() if LINE.match(ln)]  # (libraries may log there too)
    assert len(lines) >= 6, log.read_text()
    assert any(" rung-done " in ln and "alignment=" in ln for ln in lines), log.read_text() + err[-2000:]
    assert sum(" budget " in ln for ln in lines) >= 2 and any(
        " trial " in ln and "status=complete" in ln for ln in lines
    )
    assert "\x1b[" not in log.read_text()  # no terminal control codes in a file
    # hints: whole commands on one line each (never broken at the 60 columns), naming the paths used
    hints = {
        ln.split(":", 1)[0]: ln.split(":", 1)[1].strip()
        for ln in err.splitlines()
        if ln.startswith(("export:", "report:", "dashboard:"))
    }
    assert set(hints) == {"export", "report", "dashboard"}, err
    export = shlex.split(hints["export"])
    assert export[:2] == ["unetnas", "export"] and export[export.index("--storage") + 1] == f"sqlite:///{db}"
    assert export[export.index("--out") + 1] == str(db.parent / "export")
    # samples.png of the proxy's images in scored trial folders; objective names for optuna-dashboard
    study = optuna.load_study(study_name="prog", storage=f"sqlite:///{db}")
    scored = [t for t in study.trials if any((r := t.user_attrs.get(f"rung_{k}")) and r.get("proxy") for k in (0, 1))]
    assert scored and all((Path(t.user_attrs["dir"]) / "samples.png").is_file() for t in scored)
    assert study.metric_names == ["alignment", "gmacs"]
