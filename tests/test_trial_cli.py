"""`unetnas trial` and `unetnas sample` end to end on a very small UNet: a FLOPs horizon on the built-in world,
--resume, sampling a grid, real prepared data (tiny random AutoencoderKL + BERT), and bad input (one `error:` line,
exit code 2, no traceback, an existing checkpoint left byte for byte as it was)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import prepare_latents, tiny_bert, tiny_image_folder, tiny_vae

from tests.helpers import MINI_SPEC
from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import load_spec, save_model
from unetnas.train.recipe import load_recipe
from unetnas.train.source import ShardSource
from unetnas.train.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
SPEC = MINI_SPEC  # tests/helpers.py
# the same UNet on the tiny VAE's latents (4 x 16 x 16 from 32 px) and the tiny BERT's states (32-d, 16 tokens)
REAL_SPEC = SPEC.with_(name="mini-real", latent_channels=4, cross_attention_dim=32, vae_downsample=2)
BATCH = 8
SUMMARY_KEYS = {"train_flops", "steps", "samples", "initial_loss", "final_loss", "val_loss", "wall_s"}
CKPT_FILES = {"model.safetensors", "optimizer-rank0.pt", "state.json"}


def per_step(spec) -> float:
    return cost(spec).train_flops_per_sample * BATCH


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Spec and recipe files, and a prepared data directory (32 images, 2 shards, 4 held out)."""
    root = tmp_path_factory.mktemp("cli")
    f = {
        "root": root,
        "spec": save_model(SPEC, root / "mini.yaml"),
        "real_spec": save_model(REAL_SPEC, root / "real.yaml"),
    }
    recipe = {
        "batch_size": BATCH,
        "micro_batch": BATCH,
        "val_samples": 4,
        "val_timesteps": [100, 500, 900],
        "world_pool": 64,
        "log_every": 1,
        "deepspeed": str(ROOT / "trials" / "deepspeed" / "cpu.json"),
    }
    f["recipe"] = root / "recipe.yaml"
    f["recipe"].write_text(json.dumps(recipe))  # JSON is YAML
    f["bad_recipe"] = root / "bad_recipe.yaml"
    f["bad_recipe"].write_text(json.dumps({**recipe, "learning_rate": 0.1}))
    tiny_image_folder(root / "imgs", n=32, size=(32, 32))
    f["vae"], f["bert"] = tiny_vae(root / "vae"), tiny_bert(root / "bert")
    f["data"] = prepare_latents(root, f["vae"], f["bert"])
    f["corrupt"] = root / "corrupt"
    shutil.copytree(f["data"], f["corrupt"])
    shard = f["corrupt"] / "shard-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-100:] = bytes(100)  # zero the tail of the tensor data: same size, different sha256
    shard.write_bytes(bytes(raw))
    f["not_data"] = root / "not_data"
    f["not_data"].mkdir()
    (f["not_data"] / "a.txt").write_text("hello")
    f["empty"] = root / "empty"
    f["empty"].mkdir()
    return f


def trial_args(f: dict, spec: str, out: Path, *more: str) -> list[str]:
    return ["trial", str(f[spec]), "--recipe", str(f["recipe"]), "--out", str(out), *more]


def parse_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world_trial(files, run_cli) -> tuple[Path, dict]:
    """`unetnas trial mini.yaml --horizon H --data shapes --json` with H worth 3.5 steps."""
    out = files["root"] / "world-trial"
    horizon = 3.5 * per_step(SPEC)
    code, stdout, stderr = run_cli(
        trial_args(files, "spec", out, "--horizon", f"{horizon!r}", "--data", "shapes", "--json")
    )
    assert code == 0, stderr
    return out, parse_json(stdout)


@pytest.fixture(scope="module")
def real_trial(files, run_cli) -> tuple[Path, dict]:
    out = files["root"] / "real-trial"
    code, stdout, stderr = run_cli(
        trial_args(files, "real_spec", out, "--data", str(files["data"]), "--steps", "3", "--json")
    )
    assert code == 0, stderr
    return out, parse_json(stdout)


def test_horizon_run_reports_flops_metrics_and_checkpoint(world_trial) -> None:
    out, s = world_trial
    assert SUMMARY_KEYS <= s.keys()
    assert (s["steps"], s["samples"]) == (3, 3 * BATCH)
    assert s["train_flops"] == cost(SPEC).train_flops_per_sample * s["samples"] <= 3.5 * per_step(SPEC)
    assert all(math.isfinite(s[k]) and s[k] > 0 for k in ("initial_loss", "final_loss", "val_loss", "wall_s"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 1), ("train", 2), ("train", 3), ("val", 3)]
    assert records[0]["loss"] == s["initial_loss"] and records[-1]["val_loss"] == s["val_loss"]
    assert {p.name for p in (out / "checkpoint").iterdir()} == CKPT_FILES
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and len(state["history"]) == 3 and state["spec"] == SPEC.model_dump(mode="json")
    assert load_spec(out / "spec.yaml") == SPEC and (out / "recipe.yaml").is_file()


def test_resume_continues_in_the_same_folder(files, world_trial, run_cli, tmp_path) -> None:
    out = tmp_path / "trial"
    shutil.copytree(world_trial[0], out)
    before = json.loads((out / "checkpoint" / "state.json").read_text())
    horizon = 5.5 * per_step(SPEC)
    code, stdout, stderr = run_cli(trial_args(files, "spec", out, "--horizon", f"{horizon:.6e}", "--resume", "--json"))
    assert code == 0, stderr
    s = parse_json(stdout)
    assert (s["steps"], s["new_steps"], s["samples"]) == (5, 2, 5 * BATCH)
    assert s["train_flops"] == cost(SPEC).train_flops_per_sample * 5 * BATCH
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5 and state["history"][:3] == before["history"] and len(state["history"]) == 5
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 3, 4, 5, 5]  # appended: train 1-3, val 3, train 4-5, val 5
    assert {p.name for p in out.iterdir()} == {"checkpoint", "metrics.jsonl", "spec.yaml", "recipe.yaml"}


def test_sample_writes_a_grid(world_trial, run_cli, tmp_path) -> None:
    from PIL import Image

    grid = tmp_path / "grid.png"
    code, _, stderr = run_cli(
        [
            "sample",
            "--checkpoint",
            str(world_trial[0]),
            "--prompt",
            "a red circle",
            "--prompt",
            "two blue squares",
            "-n",
            "2",
            "--steps",
            "3",
            "--out",
            str(grid),
        ]
    )
    assert code == 0, stderr
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.size == (2 * 16 * 4, 2 * 16 * 4)  # 2x2 tiles of 16 px, upscaled x4


def test_real_data_trial_and_sample(files, real_trial, run_cli, tmp_path) -> None:
    out, s = real_trial
    assert (s["steps"], s["samples"]) == (3, 3 * BATCH) and SUMMARY_KEYS <= s.keys()
    assert s["train_flops"] == cost(REAL_SPEC).train_flops_per_sample * 3 * BATCH
    assert all(math.isfinite(s[k]) for k in ("initial_loss", "final_loss", "val_loss"))
    assert {p.name for p in (out / "checkpoint").iterdir()} == CKPT_FILES
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["data"]["kind"] == "shards" and Path(state["data"]["path"]) == files["data"].resolve()
    grid = tmp_path / "grid.png"
    argv = [
        "sample",
        "--checkpoint",
        str(out),
        "--prompt",
        "a red square",
        "-n",
        "2",
        "--steps",
        "2",
        "--out",
        str(grid),
    ]
    code, _, stderr = run_cli([*argv, "--vae", str(files["vae"])])  # decoded by the tiny VAE: 16 latent -> 32 px
    assert code == 0, stderr
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == (2 * 32 * 4, 32 * 4)
    code, _, stderr = run_cli(argv)  # latents without --vae: a usage error
    assert code == 2 and stderr.startswith("error:") and "--vae" in stderr


def expect_usage_error(run_cli, argv: list[str], match: str) -> str:
    code, stdout, stderr = run_cli(argv)
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing_data", "is neither 'shapes' nor a directory"),
        ("not_data", "meta.json: missing"),
        ("corrupt_shard", "shard-00001.safetensors: is corrupt"),
        ("unknown_recipe_key", "learning_rate"),
        ("horizon=-1", "--horizon"),
        ("horizon=0", "--horizon"),
        ("horizon=abc", "--horizon"),
        ("horizon=inf", "--horizon"),
        ("horizon=nan", "--horizon"),
        ("horizon_and_steps", "exactly one of"),
        ("resume_empty", "has no checkpoint to resume"),
        ("resume_missing", "has no checkpoint to resume"),
    ],
)
def test_bad_input_is_one_line_exit_2(files, run_cli, tmp_path, case, match) -> None:
    out = tmp_path / "out"
    data, recipe, more = "shapes", files["recipe"], ["--steps", "1"]
    if case == "missing_data":
        data = str(files["root"] / "no-such-dir")
    elif case == "not_data":
        data = str(files["not_data"])
    elif case == "corrupt_shard":
        data = str(files["corrupt"])
    elif case == "unknown_recipe_key":
        recipe = files["bad_recipe"]
    elif case.startswith("horizon="):
        more = ["--horizon", case.split("=")[1]]
    elif case == "horizon_and_steps":
        more = ["--steps", "1", "--horizon", "1e12"]
    elif case == "resume_empty":
        out.mkdir()
        more.append("--resume")
    elif case == "resume_missing":
        more.append("--resume")
    spec = "real_spec" if data != "shapes" else "spec"
    argv = ["trial", str(files[spec]), "--recipe", str(recipe), "--out", str(out), "--data", data, *more]
    expect_usage_error(run_cli, argv, match)
    assert not out.exists() or not any(out.iterdir())  # nothing half-made


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_bad_input_found_after_loading_data(files, run_cli, tmp_path, json_flag) -> None:
    """A horizon below one step and a spec that does not fit the data: found once the data is open."""
    out = tmp_path / "out"
    data = ["--data", str(files["data"])]
    below = f"{0.5 * per_step(REAL_SPEC):.6e}"
    expect_usage_error(
        run_cli, trial_args(files, "real_spec", out, *data, "--horizon", below, *json_flag), "is below one step"
    )
    assert not out.exists()
    small = save_model(REAL_SPEC.with_(latent_size=8), tmp_path / "small.yaml")
    argv = ["trial", str(small), "--recipe", str(files["recipe"]), "--out", str(out), *data, "--steps", "1", *json_flag]
    expect_usage_error(run_cli, argv, "latent_size=8: the data needs 16")
    assert not out.exists()


def test_existing_trial_is_never_overwritten(files, real_trial, run_cli) -> None:
    out = real_trial[0]
    before = snapshot(out)
    argv = trial_args(files, "real_spec", out, "--data", str(files["data"]), "--steps", "1")
    expect_usage_error(run_cli, argv, "already holds a trial")
    other = save_model(REAL_SPEC.with_(base_channels=16), files["root"] / "other.yaml")
    argv = [
        "trial",
        str(other),
        "--recipe",
        str(files["recipe"]),
        "--out",
        str(out),
        "--data",
        str(files["data"]),
        "--steps",
        "9",
        "--resume",
    ]
    expect_usage_error(run_cli, argv, "spec.base_channels=16: the trial has 8")
    assert snapshot(out) == before


def test_run_failing_mid_training_keeps_the_checkpoint(files, real_trial, tmp_path) -> None:
    out = tmp_path / "trial"
    shutil.copytree(real_trial[0], out)
    before = snapshot(out / "checkpoint")
    recipe = load_recipe(files["recipe"])
    source = ShardSource(files["data"])

    def boom(rec: dict) -> None:
        if rec["step"] == 5:
            raise RuntimeError("simulated failure mid-training")

    with pytest.raises(RuntimeError, match="simulated"):
        run_trial(REAL_SPEC, recipe, source, out, steps=8, resume=True, on_step=boom)
    assert snapshot(out / "checkpoint") == before
    assert {p.name for p in out.iterdir()} == {"checkpoint", "metrics.jsonl", "spec.yaml", "recipe.yaml"}
    # and a new trial that fails leaves no folder behind
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="simulated"):
        run_trial(REAL_SPEC, recipe, source, fresh, steps=8, on_step=boom)
    assert not fresh.exists()
    with pytest.raises(UserError, match="already holds a trial"):
        run_trial(REAL_SPEC, recipe, source, out, steps=8)


def test_json_stdout_is_one_object(files, tmp_path) -> None:
    """In a fresh process (as a user runs it) `--json` prints exactly one JSON object on stdout."""
    exe = Path(sys.executable).with_name("unetnas")
    if not exe.is_file():
        pytest.skip("no unetnas console script beside this Python")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "trial"
    proc = subprocess.run(
        [str(exe), *trial_args(files, "real_spec", out, "--data", str(files["data"]), "--steps", "1", "--json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"] == 1, proc.stdout
