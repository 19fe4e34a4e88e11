"""optuna-dashboard speaks the study's language: objective names, trial cards and image grids as notes and
artifacts, the report's plots; the served study page, read in headless Chromium, names the objectives."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note
from study_factory import make_study

from unetnas.dashboard import default_artifact_dir, sync_dashboard, trial_card
from unetnas.report.records import ALIGNMENT, name_objectives, study_records


@pytest.fixture
def small(tmp_path) -> tuple[str, optuna.Study]:
    url = make_study(tmp_path)
    return url, optuna.load_study(study_name="small", storage=url)


def test_sync_writes_names_cards_artifacts_and_plots_once(small, tmp_path):
    url, study = small
    done = sync_dashboard(study, url, tmp_path / "art")
    assert done.objectives == ("alignment", "gmacs") and study.metric_names == ["alignment", "gmacs"]
    assert done.artifacts_uploaded == 9 + 3 and done.notes_written == 9 + 1 and done.plots == 6
    fresh = optuna.load_study(study_name="small", storage=url)  # what the dashboard reads: artifacts on each trial
    assert optuna.artifacts.get_all_artifact_meta(fresh) == []  # none left at study level
    files = {m.filename: m for m in optuna.artifacts.get_all_artifact_meta(fresh.trials[8], storage=fresh._storage)}
    assert set(files) == {"trial-0008-samples.png", "trial-0008-model_card.md"}
    assert (tmp_path / "art" / files["trial-0008-samples.png"].artifact_id).read_bytes()[:4] == b"\x89PNG"
    assert fresh.trials[8].state.is_finished()  # finished trials take their artifacts too
    note = get_note(optuna.trial.Trial(study, study.trials[8]._trial_id))
    assert (
        note.startswith("## small-t8")
        and f"![samples](/artifacts/{study._study_id}/{study.trials[8]._trial_id}/" in note
    )
    assert "| 2 | 9e+10 |" in note  # one row per finished rung
    design = next(line for line in note.splitlines() if line.startswith("| design |"))
    assert design.count("|") - design.count("\\|") == 3  # one cell, whatever the spec text holds
    attrs = study._storage.get_study_system_attrs(study._study_id)  # where optuna-dashboard keeps its plots
    assert any("unetnas-pareto" in k for k in attrs) and any("unetnas-scaling" in k for k in attrs)
    again = sync_dashboard(optuna.load_study(study_name="small", storage=url), url, tmp_path / "art")
    assert (again.artifacts_uploaded, again.notes_written) == (0, 0)  # idempotent: nothing new to write


def test_trial_card_without_records_is_still_a_card():
    _, trials = study_records(optuna.create_study(directions=["maximize", "minimize"]))
    assert trials == []
    from unetnas.report.records import TrialRecord

    card = trial_card(TrialRecord(3, "FAIL", "failed", "x", {}, None, None, None, False), ALIGNMENT)
    assert card.startswith("## x") and "| parameters | n/a |" in card


def test_default_artifact_dir_sits_beside_the_sqlite_file(tmp_path):
    assert default_artifact_dir(f"sqlite:///{tmp_path}/s/study.db", "s") == tmp_path / "s" / "artifacts"
    assert default_artifact_dir("postgresql+psycopg://u@h/db", "s", tmp_path) == tmp_path / "s" / "artifacts"


def _serve(url: str, port: int, *more: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unetnas.cli.app", "dashboard", "--storage", url, "--port", str(port), *more]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _get(url: str, tries: int = 120) -> bytes:
    for _ in range(tries):
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url}")


def test_dashboard_study_page_names_the_objectives(small, tmp_path, free_port, browser):
    url, study = small
    name_objectives(study)  # what the search does; --no-sync: no notes or plots that could also hold the names
    port = free_port()
    proc = _serve(url, port, "--study", "small", "--no-sync")
    try:
        body = _get(f"http://127.0.0.1:{port}/api/studies")
        assert b'"study_name": "small"' in body or b'"study_name":"small"' in body
        dom = browser.dom(f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}")
        # the dashboard's own objective selectors (Pareto-front axes) carry the names, not "Objective 0"
        shown = set(re.findall(r"MuiSelect-select[^>]*>([^<]+)<", dom))
        assert {"alignment", "gmacs"} <= shown, shown
        with socket.socket() as s:  # bound to loopback only, as a server should be by default
            host = socket.gethostbyname(socket.gethostname())
            assert host.startswith("127.") or s.connect_ex((host, port)) != 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_command_syncs_and_serves_artifacts(small, tmp_path, free_port):
    url, study = small
    port = free_port()
    proc = _serve(url, port, "--study", "small")
    try:
        _get(f"http://127.0.0.1:{port}/api/studies")
        fresh = optuna.load_study(study_name="small", storage=url)
        t7 = fresh.trials[7]
        meta = optuna.artifacts.get_all_artifact_meta(t7, storage=fresh._storage)
        files = {m.filename: m.artifact_id for m in meta}
        png = _get(
            f"http://127.0.0.1:{port}/artifacts/{study._study_id}/{t7._trial_id}/{files['trial-0007-samples.png']}"
        )
        assert png[:4] == b"\x89PNG"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    art = Path(url.removeprefix("sqlite:///")).parent / "artifacts"
    assert f"artifacts in {art}" in out and "12 artifacts, 6 plots" in out, out
    assert f"serving {url} at http://127.0.0.1:{port}" in out
