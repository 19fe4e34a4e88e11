"""Fault injection: every file the product reads back (trial state, checkpoint weights and optimizer state, metrics
log; spaces, recipes, specs, layouts, question files) damaged, truncated, foreign or mistyped, and a trial resumed
under changed settings. Each case runs the real CLI and asserts one `error:` line, exit code 2, no traceback, and
every stored file byte for byte as it was."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import MINI_SPEC
from unetnas.cost import cost
from unetnas.io import save_model
from unetnas.train.recipe import Recipe
from unetnas.train.trial import RESUME_MAY_CHANGE

ROOT = Path(__file__).resolve().parents[1]
SPEC = MINI_SPEC  # tests/helpers.py
BATCH = 8
RECIPE = {
    "batch_size": BATCH,
    "micro_batch": BATCH,
    "val_samples": 4,
    "val_timesteps": [100, 500, 900],
    "world_pool": 64,
    "log_every": 1,
    "warmup_flops": 0.0,
    "deepspeed": str(ROOT / "trials" / "deepspeed" / "cpu.json"),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_recipe(path: Path, **changes: Any) -> Path:
    recipe = {k: v for k, v in {**RECIPE, **changes}.items() if v is not None}
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def expect_error(run_cli, argv: list[str], *matches: str, keep: Path | None = None) -> str:
    """Run the CLI; one `error:` line holding every match, exit 2, no traceback, ``keep`` byte-identical."""
    before = snapshot(keep) if keep is not None else None
    code, stdout, stderr = run_cli(argv)
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr and stdout.strip() == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for m in matches:
        assert m in lines[0], lines[0]
    if keep is not None:
        assert snapshot(keep) == before, "a refused input changed stored files"
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory, run_cli) -> dict[str, Path]:
    """A 2-step trial of the mini UNet on the built-in world, and its spec and recipe files."""
    root = tmp_path_factory.mktemp("faults")
    f = {"root": root, "spec": save_model(SPEC, root / "mini.yaml"), "recipe": write_recipe(root / "recipe.yaml")}
    f["trial"] = root / "trial"
    code, _, stderr = run_cli(trial_argv(f, f["trial"], "--steps", "2"))
    assert code == 0, stderr
    return f


def trial_argv(f: dict[str, Path], out: Path, *more: str, recipe: Path | None = None) -> list[str]:
    return ["trial", str(f["spec"]), "--recipe", str(recipe or f["recipe"]), "--out", str(out), *more]


@pytest.fixture
def trial(made, tmp_path) -> Path:
    """A fresh copy of the trial to damage."""
    out = tmp_path / "trial"
    shutil.copytree(made["trial"], out)
    return out


def _edit_state(trial: Path, edit) -> None:  # noqa: ANN001 (a function of the state mapping)
    path = trial / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))


def _del(key: str):  # noqa: ANN202
    return lambda s: s.pop(key)


def _set(key: str, value: Any):  # noqa: ANN202
    return lambda s: s.__setitem__(key, value)


# -- trial state -------------------------------------------------------------------------------------------------
STATE_FAULTS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "is not valid JSON"),
    "empty": (lambda p: p.write_bytes(b""), "is not valid JSON"),
    "binary": (lambda p: p.write_bytes(bytes(range(256)) * 4), "is not text"),
    "foreign_json": (lambda p: p.write_text('{"model": "something else"}'), "is not a unetnas trial state"),
    "a_list": (lambda p: p.write_text("[1, 2, 3]"), "is not a unetnas trial state"),
    "repeated_key": (lambda p: p.write_text(p.read_text().replace('"step"', '"step": 1, "step"', 1)), "step"),
}
EDITS = {  # a well-formed file whose fields are missing, mistyped or contradict each other
    "no_history": (_del("history"), "history: Field required"),
    "no_train_flops": (_del("train_flops"), "train_flops: Field required"),
    "step_is_bool": (_set("step", True), "step=True: Input should be a valid integer"),
    "step_is_float": (_set("step", 2.5), "step=2.5: Input should be a valid integer"),
    "samples_off": (_set("samples", 3 * BATCH), "samples=24 is not step x batch_size = 16"),
    "flops_off": (_set("train_flops", 1.0), "train_flops=1.0 is not samples x FLOPs per sample"),
    "history_short": (lambda s: s["history"].pop(), "history has 1 losses for 2 steps"),
    "spec_broken": (lambda s: s["spec"].__setitem__("base_channels", "wide"), "spec.base_channels='wide'"),
    "recipe_foreign": (lambda s: s["recipe"].__setitem__("optimizer", "sgd"), "recipe.optimizer"),
    "negative_step": (_set("step", -1), "step=-1: Input should be greater than or equal to 0"),
}


@pytest.mark.parametrize("case", sorted(STATE_FAULTS))
@pytest.mark.parametrize("command", ["resume", "sample"])
def test_damaged_state_is_one_line(made, trial, run_cli, tmp_path, case: str, command: str) -> None:
    damage, match = STATE_FAULTS[case]
    damage(trial / "checkpoint" / "state.json")
    argv = (
        trial_argv(made, trial, "--steps", "4", "--resume")
        if command == "resume"
        else ["sample", "--checkpoint", str(trial), "--prompt", "a red circle", "-n", "1", "--steps", "2"]
        + ["--out", str(tmp_path / "grid.png")]
    )
    expect_error(run_cli, argv, "state.json", match, keep=trial)
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("case", sorted(EDITS))
def test_inconsistent_state_is_one_line(made, trial, run_cli, case: str) -> None:
    edit, match = EDITS[case]
    _edit_state(trial, edit)
    expect_error(run_cli, trial_argv(made, trial, "--steps", "4", "--resume"), "state.json", match, keep=trial)


# -- checkpoint weights and optimizer state ------------------------------------------------------------------------
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) * 2 // 3])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00\x01not a tensor file" * 100)


def _other_design(p: Path) -> None:
    save_file({"conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(p))


CKPT_FAULTS = {
    "weights_truncated": ("model.safetensors", _truncate, "not readable weights"),
    "weights_garbage": ("model.safetensors", _garbage, "not readable weights"),
    "weights_other_design": ("model.safetensors", _other_design, "weights of another design"),
    "weights_missing": ("model.safetensors", Path.unlink, "missing: expected the trial's weights"),
    "optimizer_truncated": ("optimizer-rank0.pt", _truncate, "not a readable optimizer state"),
    "optimizer_garbage": ("optimizer-rank0.pt", _garbage, "not a readable optimizer state"),
    "optimizer_missing": ("optimizer-rank0.pt", Path.unlink, "no optimizer state for this rank"),
    "optimizer_foreign": ("optimizer-rank0.pt", lambda p: torch.save([1, 2], p), "not an optimizer state"),
    "optimizer_other_design": ("optimizer-rank0.pt", lambda p: _other_optimizer(p), "optimizer state of another"),
}


def _other_optimizer(p: Path) -> None:
    """A well-formed AdamW state of another model (one 3x3 linear layer)."""
    layer = torch.nn.Linear(3, 3)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), p)


@pytest.mark.parametrize("case", sorted(CKPT_FAULTS))
def test_damaged_checkpoint_is_one_line(made, trial, run_cli, case: str) -> None:
    name, damage, match = CKPT_FAULTS[case]
    damage(trial / "checkpoint" / name)
    expect_error(run_cli, trial_argv(made, trial, "--steps", "4", "--resume"), name, match, keep=trial)


def test_damaged_weights_are_refused_by_sample(trial, run_cli, tmp_path) -> None:
    _other_design(trial / "checkpoint" / "model.safetensors")
    argv = ["sample", "--checkpoint", str(trial), "--prompt", "a", "-n", "1", "--out", str(tmp_path / "g.png")]
    expect_error(run_cli, argv, "model.safetensors", "weights of another design", keep=trial)


# -- metrics log ----------------------------------------------------------------------------------------------------
METRICS_FAULTS = {
    "cut_last_line": (lambda t: t[:-7], "line 3 is cut short (no newline)"),
    "garbage_line": (lambda t: t.replace("\n", "\n}{garbage\n", 1), "metrics.jsonl:2: is not valid JSON"),
    "foreign_record": (lambda t: t + '{"epoch": 1}\n', "metrics.jsonl:4: is not a metrics record"),
    "a_list_line": (lambda t: t + "[1, 2]\n", "metrics.jsonl:4: is not a metrics record"),
    "val_without_loss": (lambda t: t + '{"kind": "val", "step": 2, "train_flops": 1.0}\n', "4: val_loss: Field"),
    "mistyped_step": (lambda t: t.replace('"step": 1', '"step": true', 1), "metrics.jsonl:1: step=True"),
    "repeated_key": (lambda t: t.replace('"loss"', '"loss": 0, "loss"', 1), "metrics.jsonl:1: loss: key given"),
    "another_trial": (lambda t: _scaled_flops(t, 3.0), "not this trial's"),  # another design's FLOPs per sample
}


def _scaled_flops(text: str, factor: float) -> str:
    rows = [json.loads(line) for line in text.splitlines()]
    for r in rows:
        if r["kind"] == "train":
            r["train_flops"] *= factor
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("case", sorted(METRICS_FAULTS))
def test_damaged_metrics_log_is_refused_before_appending(made, trial, run_cli, case: str) -> None:
    log = trial / "metrics.jsonl"
    edit, match = METRICS_FAULTS[case]
    log.write_text(edit(log.read_text()))
    expect_error(run_cli, trial_argv(made, trial, "--steps", "4", "--resume"), match, keep=trial)


def test_a_missing_metrics_log_is_said_and_restarts(made, trial, run_cli) -> None:
    (trial / "metrics.jsonl").unlink()
    code, _, err = run_cli(trial_argv(made, trial, "--steps", "3", "--resume"))
    assert code == 0 and "Traceback" not in err, err
    assert "metrics.jsonl is missing; its log restarts at step 3" in err
    assert json.loads((trial / "metrics.jsonl").read_text().splitlines()[0])["step"] == 3


# -- resume under changed settings ----------------------------------------------------------------------------------
CHANGED = {  # for every recipe field a resume must refuse: a valid other value
    "lr": 0.5,
    "horizon_unit": "samples",
    "warmup_flops": 1e9,
    "warmup_samples": 64,
    "weight_decay": 0.1,
    "betas": [0.8, 0.99],
    "grad_clip": 2.0,
    "batch_size": 16,
    "caption_dropout": 0.2,
    "num_train_timesteps": 999,
    "beta_start": 0.001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "deepspeed": str(ROOT / "trials" / "deepspeed" / "zero2.json"),
    "precision": "bf16",
    "val_samples": 8,
    "val_timesteps": [100, 500],
    "world_pool": 128,
}


def test_every_recipe_field_is_classified_for_resume() -> None:
    """A new recipe field must be added to RESUME_MAY_CHANGE or to the refused cases here (README "Resume rules")."""
    fields = set(Recipe.model_fields) - {"source"}
    assert fields == set(CHANGED) | set(RESUME_MAY_CHANGE)
    assert not set(CHANGED) & set(RESUME_MAY_CHANGE)


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_resume_with_a_changed_recipe_field_is_refused(made, trial, run_cli, tmp_path, field: str) -> None:
    value = CHANGED[field]
    changes: dict[str, Any] = {field: value}
    if field == "batch_size":
        changes["micro_batch"] = 16
    if field in ("horizon_unit", "warmup_samples"):  # the warm-up is in the horizon's unit
        changes.update(horizon_unit="samples", warmup_flops=None)
        field = "horizon_unit"  # the first field that differs is named
    recipe = write_recipe(tmp_path / "other.yaml", **changes)
    old = Recipe.model_validate({**RECIPE}).model_dump(mode="json")[field]
    line = expect_error(
        run_cli,
        trial_argv(made, trial, "--steps", "4", "--resume", recipe=recipe),
        f"recipe.{field}=",
        f"the trial has {old!r}",
        keep=trial,
    )
    assert str(trial / "checkpoint") in line


def test_batch_size_change_is_refused_not_miscounted(made, trial, run_cli, tmp_path) -> None:
    """The issue's input: a batch-8 trial resumed with batch 16 once recorded 2 x 16 samples for 2 x 8."""
    recipe = write_recipe(tmp_path / "b16.yaml", batch_size=16, micro_batch=16)
    expect_error(
        run_cli,
        trial_argv(made, trial, "--steps", "3", "--resume", recipe=recipe),
        "recipe.batch_size=16: the trial has 8",
        keep=trial,
    )


@pytest.mark.parametrize(
    ("argv_change", "match"),
    [
        (("--seed", "1"), "--seed=1: the trial has seed 0"),
    ],
)
def test_resume_with_another_seed_is_refused(made, trial, run_cli, argv_change, match) -> None:
    expect_error(run_cli, trial_argv(made, trial, "--steps", "4", "--resume", *argv_change), match, keep=trial)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"base_channels": 16}, "spec.base_channels=16: the trial has 8"),
        ({"act_fn": "gelu"}, "spec.act_fn='gelu': the trial has 'silu'"),
        ({"layers_per_block": (2, 1)}, "spec.layers_per_block=[2, 1]: the trial has [1, 1]"),
        ({"name": "renamed"}, "spec.name='renamed': the trial has 'mini'"),
    ],
)
def test_resume_with_another_spec_is_refused(made, trial, run_cli, tmp_path, change, field) -> None:
    other = save_model(SPEC.with_(**change), tmp_path / "other.yaml")
    argv = ["trial", str(other), "--recipe", str(made["recipe"]), "--out", str(trial), "--steps", "4", "--resume"]
    expect_error(run_cli, argv, field, keep=trial)


def test_allowed_changes_are_applied_and_accounting_stays_exact(made, trial, run_cli, tmp_path) -> None:
    """micro_batch, log_every, sampling and search settings may change: the same global batch, the same count."""
    recipe = write_recipe(tmp_path / "ok.yaml", micro_batch=4, log_every=2, sample_steps=5, cfg_scale=2.0, name="x")
    code, stdout, stderr = run_cli(trial_argv(made, trial, "--steps", "4", "--resume", "--json", recipe=recipe))
    assert code == 0, stderr
    s = json.loads(stdout.strip().splitlines()[-1])
    per_sample = cost(SPEC).train_flops_per_sample
    assert (s["steps"], s["new_steps"], s["samples"]) == (4, 2, 4 * BATCH)
    assert s["train_flops"] == per_sample * 4 * BATCH
    # the uninterrupted run with the first recipe reaches the same losses (micro-batches only split the batch)
    ref = tmp_path / "ref"
    code, stdout, stderr = run_cli(trial_argv(made, ref, "--steps", "4", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout.strip().splitlines()[-1])
    assert math.isclose(s["final_loss"], r["final_loss"], rel_tol=1e-4) and r["samples"] == s["samples"]
    state = json.loads((trial / "checkpoint" / "state.json").read_text())
    assert state["recipe"]["micro_batch"] == 4 and state["samples"] == 4 * BATCH


# -- checkpoints written atomically ---------------------------------------------------------------------------------
def test_a_save_cut_between_its_renames_leaves_a_checkpoint(made, trial, run_cli) -> None:
    """Killed after renaming the old checkpoint away and before moving the new one in: `.old` is read, and the next
    save replaces it; a half-written `.tmp` is ignored."""
    (trial / "checkpoint").rename(trial / "checkpoint.old")
    (trial / "checkpoint.tmp").mkdir()
    (trial / "checkpoint.tmp" / "state.json").write_text('{"step": ')
    code, stdout, stderr = run_cli(trial_argv(made, trial, "--steps", "3", "--resume", "--json"))
    assert code == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["steps"] == 3
    assert {p.name for p in trial.iterdir()} == {"checkpoint", "metrics.jsonl", "spec.yaml", "recipe.yaml"}
    assert json.loads((trial / "checkpoint" / "state.json").read_text())["step"] == 3


# -- configs a person writes ----------------------------------------------------------------------------------------
CONFIG_FAULTS = {  # file text -> what the one line must say
    "recipe_repeated_key": ("recipe", "lr: 0.1\nbatch_size: 8\nlr: 0.2\n", "lr: key given twice (lines 1 and 3)"),
    "recipe_bool_int": ("recipe", "batch_size: true\n", "batch_size=True: Input should be a valid integer"),
    "recipe_float_int": ("recipe", "batch_size: 32.5\n", "batch_size=32.5: Input should be a valid integer"),
    "recipe_whole_float_int": ("recipe", "batch_size: 32.0\n", "batch_size=32.0: Input should be a valid integer"),
    "recipe_string_number": ("recipe", "lr: fast\n", "lr='fast': Input should be a valid number"),
    "recipe_nested_repeat": ("recipe", "search:\n  eta: 3\n  eta: 4\n", "eta: key given twice (lines 2 and 3)"),
    "recipe_nested_bool": ("recipe", "search:\n  eta: yes\n", "search.eta=True: Input should be a valid integer"),
    "recipe_tuple_bool": ("recipe", "val_timesteps: [100, no]\n", "val_timesteps.1=False"),
    "recipe_binary_tag": ("recipe", "name: !!binary aGVsbG8=\n", "holds a value that is not plain data"),
    "spec_bool_int": ("spec", "base_channels: true\n", "base_channels=True: Input should be a valid integer"),
    "spec_float_int": ("spec", "text_len: 16.0\n", "text_len=16.0: Input should be a valid integer"),
    "spec_list_bool": ("spec", "layers_per_block: [1, yes]\n", "layers_per_block.1=True"),
    "spec_repeated_key": ("spec", "base_channels: 8\nbase_channels: 16\n", "base_channels: key given twice"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FAULTS))
def test_mistyped_configs_are_refused(made, run_cli, tmp_path, case: str) -> None:
    kind, text, match = CONFIG_FAULTS[case]
    out = tmp_path / "out"
    if kind == "recipe":
        path = tmp_path / "recipe.yaml"
        base = {k: v for k, v in RECIPE.items() if k + ":" not in text and not text.startswith("search")}
        path.write_text(text + "".join(f"{k}: {json.dumps(v)}\n" for k, v in base.items()))
        argv = trial_argv(made, out, "--steps", "1", recipe=path)
    else:
        path = tmp_path / "spec.yaml"
        lines = [ln for ln in made["spec"].read_text().splitlines() if ln.split(":")[0] not in text]
        path.write_text("\n".join(lines) + "\n" + text)
        argv = ["trial", str(path), "--recipe", str(made["recipe"]), "--out", str(out), "--steps", "1"]
    line = expect_error(run_cli, argv, match)
    assert str(path) in line and not out.exists()


SPACE_FAULTS = {
    "space_bool_in_list": ("base_channels: [16, 24, 32]", "base_channels: [16, yes]", "base_channels.1=True"),
    "space_float_in_list": ("base_channels: [16, 24, 32]", "base_channels: [16, 24.5]", "base_channels.1=24.5"),
    "space_base_bool": ("text_len: 32 ", "text_len: true ", "base: text_len=True: Input should be a valid integer"),
    "space_repeated_key": ("mid_depth: [0, 1]", "mid_depth: [0, 1]\nmid_depth: [1]", "mid_depth: key given twice"),
    "space_repeated_nested": ("  head_dim: 8 ", "  head_dim: 8\n  head_dim: 16 ", "head_dim: key given twice"),
}


@pytest.mark.parametrize("case", sorted(SPACE_FAULTS))
def test_mistyped_spaces_are_refused(run_cli, tmp_path, case: str) -> None:
    old, new, match = SPACE_FAULTS[case]
    text = (ROOT / "space" / "tiny.yaml").read_text()
    assert old in text
    path = tmp_path / "space.yaml"
    path.write_text(text.replace(old, new, 1))
    expect_error(run_cli, ["space", "show", str(path)], str(path), match)


def test_repeated_key_in_a_layout_is_refused(run_cli, tmp_path) -> None:
    text = (ROOT / "dashboards" / "report.yaml").read_text()
    path = tmp_path / "report.yaml"
    path.write_text(text.replace("title:", "title: x\ntitle:", 1))
    expect_error(run_cli, ["report", "--study", "none", "--layout", str(path)], "title: key given twice")


def test_repeated_key_in_a_question_file_is_refused(made, run_cli, tmp_path) -> None:
    item = {"caption": "a red circle", "question": "is there a circle?", "choices": ["yes", "no"], "answer": "yes"}
    text = json.dumps([{"id": "0", **item, "element_type": "shape", "element": "circle"}])
    path = tmp_path / "q.json"
    path.write_text(text.replace('"answer": "yes"', '"answer": "yes", "answer": "no"'))
    argv = ["proxy", "tifa", "--checkpoint", str(made["trial"]), "--questions", str(path), "--vqa", str(tmp_path)]
    expect_error(run_cli, argv, "q.json", "answer: key given twice")


@pytest.mark.parametrize(
    "path",
    sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("space/*.yaml"), *ROOT.glob("trials/*.yaml")])
    + ["dashboards/report.yaml"],
)
def test_every_shipped_config_loads_strictly(path: str) -> None:
    from unetnas.io import load_model, read_yaml
    from unetnas.report.layout import Layout
    from unetnas.space import SearchSpace

    model = {"space": SearchSpace, "trials": Recipe, "dashboards": Layout}[path.split("/")[0]]
    loaded = load_model(ROOT / path, model)
    assert loaded.model_dump(exclude={"source"}) == model.model_validate(read_yaml(ROOT / path)).model_dump(
        exclude={"source"}
    )


# -- exported designs (read back by unetnas.artifacts.read_export) --------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory, run_cli) -> Path:
    from test_export import export_args, make_study

    root = tmp_path_factory.mktemp("export")
    db, _ = make_study(root)
    code, _, stderr = run_cli(export_args(db, root / "out"))
    assert code == 0, stderr
    return root / "out"


def test_exported_designs_read_back(exported) -> None:
    from unetnas.artifacts import read_export

    designs = [read_export(d) for d in sorted(exported.iterdir()) if d.is_dir()]
    assert designs and {d.study for d in designs} == {"s"}
    assert all(d.metrics.weights and d.spec.name in ("small", "large") for d in designs)


EXPORT_FAULTS = {
    "card_foreign": ("README.md", lambda p: p.write_text("# some other model\n"), "is not the model card of"),
    "card_other_trial": (
        "README.md",
        lambda p: p.write_text(re.sub(r"trial \d+\)", "trial 99)", p.read_text())),
        "names trial 99",
    ),
    "card_other_study": (
        "README.md",
        lambda p: p.write_text(p.read_text().replace("(study `s`", "(study `t`")),
        "names study 't'; metrics.json has 's'",
    ),
    "card_binary": ("README.md", lambda p: p.write_bytes(b"\xff\xfe\x00" * 50), "is not text"),
    "metrics_truncated": ("metrics.json", _truncate, "is not valid JSON"),
    "metrics_float_params": (
        "metrics.json",
        lambda p: p.write_text(re.sub(r'"params": (\d+)', r'"params": \1.5', p.read_text())),
        "params=",
    ),
    "metrics_bool_trial": (
        "metrics.json",
        lambda p: p.write_text(re.sub(r'"trial": \d+', '"trial": true', p.read_text())),
        "trial=True: Input should be a valid integer",
    ),
    "config_other_design": (
        "config.json",
        lambda p: p.write_text(p.read_text().replace('"cross_attention_dim": ', '"cross_attention_dim": 1')),
        "does not describe spec.yaml's design",
    ),
    "spec_repeated_key": (
        "spec.yaml",
        lambda p: p.write_text(p.read_text() + "name: again\n"),
        "name: key given twice",
    ),
    "weights_truncated": ("diffusion_pytorch_model.safetensors", _truncate, "not readable weights"),
    "weights_other_design": ("diffusion_pytorch_model.safetensors", _other_design, "weights of another design"),
    "weights_missing": ("diffusion_pytorch_model.safetensors", Path.unlink, "exported with weights"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_FAULTS))
def test_damaged_export_is_one_line(exported, tmp_path, case: str) -> None:
    from unetnas.artifacts import read_export
    from unetnas.errors import UserError

    folder = tmp_path / "design"
    shutil.copytree(next(d for d in sorted(exported.iterdir()) if d.is_dir()), folder)
    name, damage, match = EXPORT_FAULTS[case]
    damage(folder / name)
    before = snapshot(folder)
    with pytest.raises(UserError) as err:
        read_export(folder)
    line = str(err.value)
    assert len(line.splitlines()) == 1 and name in line and match in line, line
    assert snapshot(folder) == before
