"""A trial: train one candidate to a horizon (training FLOPs or samples, the recipe's ``horizon_unit``), measure validation loss, keep a resumable checkpoint."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetnas.artifacts import (
    METRICS,
    TrialState,
    checkpoint_dir,
    read_metrics,
    read_state_json,
    read_trial_state,
    state_file,
)
from unetnas.errors import UserError
from unetnas.io import save_model
from unetnas.spec import UNetSpec
from unetnas.train import checkpoint
from unetnas.train.recipe import Recipe
from unetnas.train.source import Source
from unetnas.train.trainer import Trainer


def parse_horizon(text: str | float, unit: str = "flops") -> float:
    """A positive, finite horizon in ``unit`` (training FLOPs such as ``2e12``, or training samples such as ``8192``)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        example = "FLOPs such as 2e12" if unit == "flops" else "samples such as 8192"
        raise UserError(f"must be a positive number of {example}", field="--horizon", value=text)
    return value


RESUME_MAY_CHANGE = {
    "name": "a label only",
    "micro_batch": "how the same global batch is split (gradient accumulation): steps, samples and FLOPs unchanged",
    "log_every": "how often metrics.jsonl gets a line",
    "sample_steps": "DDIM steps of sampling after training",
    "cfg_scale": "guidance scale of sampling after training",
    "search": "settings read by `unetnas search`, not by a trial",
}
"""Recipe fields a resumed trial may change, and why its accounting stays exact. Every other recipe field, the
spec, the seed, the data and the world size are refused on ``--resume`` (README, "Resume rules"): they change
what a step trains on or what a step costs, so the steps before and after would not add up to one trial."""


def _first_difference(old: Any, new: Any, path: str) -> tuple[str, Any, Any] | None:
    """(dotted field, old value, new value) of the first difference between two JSON-like values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def check_resume(ckpt: Path, state: TrialState, spec: UNetSpec | None, recipe: Recipe | None, seed: int | None) -> None:
    """Refuse a resume whose settings differ from the trial's in a way ``RESUME_MAY_CHANGE`` does not allow: one
    line naming the setting, the trial's value and the new one."""
    keep = "; resume with the trial's own settings or start a new trial with another --out"
    if spec is not None:
        diff = _first_difference(state.spec.model_dump(mode="json"), spec.model_dump(mode="json"), "spec")
        if diff:
            raise UserError(f"the trial has {diff[1]!r}{keep}", source=ckpt, field=diff[0], value=diff[2])
    if recipe is not None:
        old, new = state.recipe.model_dump(mode="json"), recipe.model_dump(mode="json")
        for key in [k for k in old if k not in RESUME_MAY_CHANGE]:  # in field order: the first one is named
            diff = _first_difference(old[key], new[key], f"recipe.{key}")
            if diff:
                raise UserError(f"the trial has {diff[1]!r}{keep}", source=ckpt, field=diff[0], value=diff[2])
    if seed is not None and seed != state.seed:
        raise UserError(f"the trial has seed {state.seed}{keep}", source=ckpt, field="--seed", value=seed)


def check_resume_data(ckpt: Path, state: TrialState, source: Source) -> None:
    """Refuse a resume on other data than the trial trained on (``Source.describe``)."""
    diff = _first_difference(state.data, source.describe(), "data")
    if diff:
        keep = "; resume on the trial's own data or start a new trial with another --out"
        raise UserError(f"the trial has {diff[1]!r}{keep}", source=ckpt, field=diff[0], value=diff[2])


def prepare_out(
    out: Path,
    resume: bool,
    spec: UNetSpec | None = None,
    recipe: Recipe | None = None,
    seed: int | None = None,
) -> TrialState | None:
    """A fresh folder for a new trial, or, for ``--resume``, an existing trial's folder whose stored files all read
    back (state, weights, metrics log) and whose settings allow the resume (``check_resume``); returns its state."""
    ckpt = out / "checkpoint"
    if resume and not (checkpoint_dir(ckpt) / checkpoint.STATE).is_file():
        raise UserError("has no checkpoint to resume; drop --resume to start a new trial", source=out)
    if not resume and out.exists() and any(out.iterdir()):
        raise UserError("already holds a trial; pass --resume to continue it or choose another --out", source=out)
    if not resume:
        return None
    state = read_trial_state(ckpt)
    check_resume(ckpt, state, spec, recipe, seed)
    if (out / METRICS).exists():  # a cut, damaged or foreign log is refused before a line is appended to it
        check_metrics(out / METRICS, state)
    elif state.step:
        print(f"note: {out / METRICS} is missing; its log restarts at step {state.step + 1}", file=sys.stderr)
    return state


def check_metrics(path: Path, state: TrialState) -> None:
    """The log belongs to the checkpoint's trial: each training record's FLOPs are its samples times the design's
    FLOPs per sample (``state.train_flops / state.samples``) and its samples are steps x the trial's batch size.
    Records after the checkpoint's step are allowed (a run killed between logging and saving)."""
    batch = state.recipe.batch_size
    per_sample = state.train_flops / state.samples if state.samples else None
    for r in read_metrics(path):
        if r.kind != "train":
            continue
        if r.samples != r.step * batch or (
            per_sample is not None and not math.isclose(r.train_flops, r.samples * per_sample, rel_tol=1e-6)
        ):
            raise UserError(
                f"step {r.step} records {r.samples} samples and {r.train_flops:.4g} FLOPs, not this trial's "
                f"{r.step * batch} samples and {r.step * batch * (per_sample or 0):.4g} FLOPs: the log of another "
                "trial? move it away to resume",
                source=path,
            )


def preflight(
    spec: UNetSpec,
    recipe: Recipe,
    source: Source,
    out: Path,
    *,
    horizon: float | None,
    steps: int | None,
    resume: bool,
    seed: int | None = None,
) -> int:
    """Every check that needs no training, before anything starts; returns the target step."""
    from unetnas.cost import cost
    from unetnas.train.trainer import check_fits

    state = prepare_out(out, resume, spec, recipe, seed)
    if state is not None:
        check_resume_data(out / "checkpoint", state, source)
        checkpoint.check(out / "checkpoint", int(os.environ.get("RANK", "0")))  # weights, optimizer: read back
    check_fits(spec, source)
    fps = cost(spec).train_flops_per_sample
    target = steps if steps is not None else recipe.horizon_steps(horizon, fps)
    if target < 1:
        one = f"{fps * recipe.batch_size:.3g} FLOPs" if recipe.horizon_unit == "flops" else "samples"
        raise UserError(f"is below one step of batch {recipe.batch_size} ({one})", field="--horizon", value=horizon)
    return target


def run_trial(
    spec: UNetSpec,
    recipe: Recipe,
    source: Source,
    out: str | Path,
    *,
    horizon: float | None = None,
    steps: int | None = None,
    resume: bool = False,
    seed: int = 0,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train to ``horizon`` (in the recipe's ``horizon_unit``; or ``steps``), then validation loss and a checkpoint; returns the summary."""
    out = Path(out)
    preflight(spec, recipe, source, out, horizon=horizon, steps=steps, resume=resume, seed=seed)
    fresh = not out.exists()
    try:
        trainer = Trainer(spec, recipe, source, out, seed=seed)
        target = steps if steps is not None else recipe.horizon_steps(horizon, trainer.cost.train_flops_per_sample)
        if resume:
            ranks = read_trial_state(out / "checkpoint").world_size
            if ranks != trainer.world:
                raise UserError(
                    f"the trial ran on {ranks} ranks (one optimizer shard each); resume it on {ranks}",
                    source=out / "checkpoint",
                    field="world size",
                    value=trainer.world,
                )
            trainer.resume()
        elif trainer.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            save_model(spec, out / "spec.yaml")
            save_model(recipe, out / "recipe.yaml")
        start = trainer.step
        trainer.train_to(target, on_step=on_step, should_stop=should_stop)
        val, eval_flops = trainer.val_loss()
        trainer.save()
    except BaseException:
        if fresh and not (out / "checkpoint").exists():
            shutil.rmtree(out, ignore_errors=True)  # a failed new trial leaves nothing half-made
        raise
    hist = trainer.history
    tail = hist[-max(1, min(10, len(hist) // 5)) :] if hist else [float("nan")]
    return {
        "spec": spec.name,
        "out": str(out),
        "train_flops": trainer.train_flops,
        "eval_flops": eval_flops,
        "steps": trainer.step,
        "new_steps": trainer.step - start,
        "samples": trainer.samples,
        "horizon_unit": recipe.horizon_unit,
        "train_flops_per_sample": trainer.cost.train_flops_per_sample,
        "initial_loss": hist[0] if hist else float("nan"),
        "final_loss": sum(tail) / len(tail),
        "val_loss": val,
        "wall_s": trainer.wall_s,
        "stopped": trainer.step < target,
    }


class LoadedTrial:
    """A trained candidate read back from its folder: spec, recipe, UNet with weights, data description."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from unetnas.build import build_unet

        p = Path(path)
        if not p.is_dir():
            raise UserError("is not a directory; expected a trial folder or its checkpoint", source=p)
        ckpt = checkpoint_dir(p if (p / checkpoint.STATE).is_file() else p / "checkpoint")
        typed, self.state = read_state_json(state_file(ckpt))
        self.spec, self.recipe = typed.spec, typed.recipe
        self.unet = build_unet(self.spec)
        self.unet.load_state_dict(checkpoint.load_weights(ckpt, self.spec))  # names and shapes checked on read
        self.unet.to(device).eval().requires_grad_(False)
        self.data: dict[str, Any] = typed.data
        self.train_flops: float = typed.train_flops
        self.path = ckpt.parent

    def text_encoder_path(self) -> str | None:
        """The encoder the trial trained with: None for the packaged MiniLM, else its local directory."""
        from unetnas.text import PACKAGED_NAME

        name = self.data.get("text_encoder", {}).get("name", PACKAGED_NAME)
        return None if name == PACKAGED_NAME else name
