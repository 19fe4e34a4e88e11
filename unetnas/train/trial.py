"""A trial: train one candidate to a horizon (training FLOPs or samples, the recipe's ``horizon_unit``), measure validation loss, keep a resumable checkpoint."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def prepare_out(out: Path, resume: bool, spec: UNetSpec | None = None) -> None:
    """A fresh folder for a new trial, or an existing trial's folder (of the same spec) for ``--resume``."""
    ckpt = out / "checkpoint"
    if resume and not (ckpt / checkpoint.STATE).is_file():
        raise UserError("has no checkpoint to resume; drop --resume to start a new trial", source=out)
    if not resume and out.exists() and any(out.iterdir()):
        raise UserError("already holds a trial; pass --resume to continue it or choose another --out", source=out)
    if resume and spec is not None and checkpoint.read_state(ckpt).get("spec") != spec.model_dump(mode="json"):
        raise UserError("holds a different spec; use another --out or the same spec", source=ckpt)


def preflight(
    spec: UNetSpec, recipe: Recipe, source: Source, out: Path, *, horizon: float | None, steps: int | None, resume: bool
) -> int:
    """Every check that needs no training, before anything starts; returns the target step."""
    from unetnas.cost import cost
    from unetnas.train.trainer import check_fits

    prepare_out(out, resume, spec)
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
    preflight(spec, recipe, source, out, horizon=horizon, steps=steps, resume=resume)
    fresh = not out.exists()
    try:
        trainer = Trainer(spec, recipe, source, out, seed=seed)
        target = steps if steps is not None else recipe.horizon_steps(horizon, trainer.cost.train_flops_per_sample)
        if resume:
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
        from unetnas.train.recipe import Recipe

        p = Path(path)
        ckpt = p if (p / checkpoint.STATE).is_file() else p / "checkpoint"
        if not p.is_dir():
            raise UserError("is not a directory; expected a trial folder or its checkpoint", source=p)
        self.state = checkpoint.read_state(ckpt)
        try:
            self.spec = UNetSpec.model_validate(self.state["spec"])
            self.recipe = Recipe.model_validate(self.state["recipe"])
        except Exception as err:
            raise UserError(f"state.json does not describe a trial ({str(err).splitlines()[0]})", source=ckpt) from None
        self.unet = build_unet(self.spec)
        try:
            self.unet.load_state_dict(checkpoint.load_weights(ckpt))
        except RuntimeError as err:
            raise UserError(f"weights do not fit the spec ({str(err).splitlines()[0]})", source=ckpt) from None
        self.unet.to(device).eval().requires_grad_(False)
        self.data: dict[str, Any] = self.state.get("data", {})
        self.train_flops: float = self.state["train_flops"]
        self.path = ckpt.parent

    def text_encoder_path(self) -> str | None:
        """The encoder the trial trained with: None for the packaged MiniLM, else its local directory."""
        from unetnas.text import PACKAGED_NAME

        name = self.data.get("text_encoder", {}).get("name", PACKAGED_NAME)
        return None if name == PACKAGED_NAME else name
