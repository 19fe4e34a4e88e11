"""Design CLI happy paths: presets, space show/sample, cost, export-config (in-process, plus real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unetnas.cost import cost
from unetnas.io import load_space, load_spec, save_model
from unetnas.presets import PRESETS

JSON_KEYS = {"params", "gmacs", "gflops", "train_gflops_per_sample", "attention_share"}


def _unetnas() -> list[str]:
    """The installed console script (``python -m unetnas.cli.app`` would import the app module twice)."""
    script = Path(sys.executable).with_name("unetnas")
    return [str(script)] if script.exists() else [shutil.which("unetnas") or "unetnas"]


def _subprocess(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*_unetnas(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cost_json_subprocess_shows_the_paper_figures():
    proc = _subprocess("cost", "sdxl", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert JSON_KEYS <= set(data)
    assert data["params"] == pytest.approx(2.39e9, rel=0.015)
    assert data["gmacs"] == pytest.approx(198, rel=0.02)
    assert data["params"] == cost(PRESETS["sdxl"]).params


def test_export_config_subprocess_writes_a_diffusers_config(tmp_path):
    from diffusers import UNet2DConditionModel

    out = tmp_path / "export"
    proc = _subprocess("export-config", "sdxl-td4_4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cfg = UNet2DConditionModel.load_config(str(out))
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(cfg)
    assert sum(p.numel() for p in model.parameters()) == cost(PRESETS["sdxl-td4_4"]).params
    assert load_spec(out / "spec.yaml") == PRESETS["sdxl-td4_4"]


@pytest.mark.parametrize("name", ["sd2", "sdxl-td4_4", "sd2.1-original", "sdxl-original", "if-xl", "tiny"])
def test_cost_json_in_process(run_cli, name):
    code, out, err = run_cli(["cost", name, "--json"])
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert JSON_KEYS <= set(data)
    c = cost(PRESETS[name])
    assert (data["params"], data["gmacs"], data["gflops"]) == (c.params, c.gmacs, c.gflops)
    assert data["train_gflops_per_sample"] == pytest.approx(3 * c.gflops)
    assert 0 < data["attention_share"] < 1


def test_cost_must_show_figures_via_cli(run_cli):
    def get(name, *extra):
        code, out, err = run_cli(["cost", name, "--json", *extra])
        assert code == 0, err
        return json.loads(out)

    assert get("sd2")["params"] == pytest.approx(0.87e9, rel=0.015)
    assert get("sd2")["gmacs"] == pytest.approx(86, rel=0.02)
    assert get("sdxl-original")["params"] == 2_567_463_684
    assert get("sd2.1-original")["params"] == 865_910_724
    assert 0.53 <= get("sdxl-td4_4")["params"] / get("sdxl")["params"] <= 0.57
    assert 0.70 <= get("sdxl-td4_4")["gmacs"] / get("sdxl")["gmacs"] <= 0.74
    assert round(get("sdxl-original", "--resolution", "256")["gflops"], 2) == 427.78


def test_cost_flags_and_spec_file(run_cli, tmp_path):
    code, out, _ = run_cli(["cost", "tiny", "--resolution", "64", "--text-len", "8", "--json"])
    assert code == 0
    data = json.loads(out)
    assert (data["resolution"], data["text_len"]) == (64, 8)
    assert data["gflops"] == cost(PRESETS["tiny"], resolution=64, text_len=8).gflops
    # a spec file gives the same numbers as the preset it was dumped from
    path = save_model(PRESETS["sdxl-td4_8"], tmp_path / "td48.yaml")
    code, out, _ = run_cli(["cost", str(path), "--json"])
    assert code == 0
    assert json.loads(out)["params"] == cost(PRESETS["sdxl-td4_8"]).params


def test_cost_table(run_cli):
    code, out, err = run_cli(["cost", "sdxl"])
    assert (code, err) == (0, "")
    assert "params" in out and "gmacs" in out and "2,391,824,644" in out


def test_presets_table_and_json(run_cli):
    code, out, err = run_cli(["presets", "--json"])
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == list(PRESETS)
    assert data["sdxl"]["params"] == cost(PRESETS["sdxl"]).params
    code, out, err = run_cli(["presets"])
    assert (code, err) == (0, "")
    assert "GMACs" in out and "params" in out
    for word in ("sdxl", "sd2", "tiny", "if-xl"):
        assert word in out


def test_presets_table_lists_every_name_on_a_wide_terminal():
    proc = _subprocess("presets")
    assert proc.returncode == 0, proc.stderr
    for name in PRESETS:
        assert f" {name} " in proc.stdout, name


def test_space_show(run_cli):
    code, out, err = run_cli(["space", "show", "space/tiny.yaml"])
    assert (code, err) == (0, "")
    tiny = load_space("space/tiny.yaml")
    assert f"{tiny.size()} members" in out
    for field in ("base_channels", "channel_mult", "level 0", "level 1", "params", "GMACs"):
        assert field in out
    # the summary says how many combinations each rule removes
    removed = tiny.removed()
    assert f"{sum(removed.values())} combinations: {removed['text-blind']} text-blind" in out
    assert f"{removed['heads']} heads" in out
    code, out, err = run_cli(["space", "show", "space/paper.yaml"])
    assert (code, err) == (0, "")
    assert "5,436 members" in out and "36 combinations: 36 text-blind" in out


def test_space_sample_prints_and_writes_members(run_cli, tmp_path):
    code, out, err = run_cli(["space", "sample", "space/tiny.yaml", "-n", "5", "--seed", "3", "--out", str(tmp_path)])
    assert (code, err) == (0, "")
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == 5
    space = load_space("space/tiny.yaml")
    specs = [load_spec(f) for f in files]
    assert all(space.contains(s) for s in specs)
    expected = {s.model_dump_json(exclude={"name"}) for s in space.sample(5, seed=3)}
    assert {s.model_dump_json(exclude={"name"}) for s in specs} == expected
    # same seed, same table
    assert run_cli(["space", "sample", "space/tiny.yaml", "-n", "5", "--seed", "3"])[1] == out


def test_space_sample_default_count(run_cli):
    code, out, err = run_cli(["space", "sample", "space/paper.yaml"])
    assert (code, err) == (0, "")
    assert "5 members" in out
