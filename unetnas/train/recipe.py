"""`Recipe`: how a trial trains (optimiser, batch, schedule, DeepSpeed config), loaded from YAML.

The paper's recipe (AdamW, 10K warmup then constant LR 8e-5, batch 2048, DDPM schedule of LDM) scaled to short
horizons: linear warm-up over a fixed amount of training FLOPs (the same for every candidate), then constant, batch
sizes a CPU can take.

Why warm-up in FLOPs: candidates are compared at equal training FLOPs, and a small model takes more optimizer steps
per FLOP than a large one. A warm-up counted in steps ends after a smaller share of a small model's compute, so at
any FLOPs horizon the small model has had more steps at full learning rate: the schedule alone would favour it.
Counted in FLOPs, every candidate spends the same compute warming up, and a rung decision at ``r`` FLOPs sees every
candidate equally far past its warm-up. The LR stays constant afterwards (no decay, as in Li et al.), so a rung's
checkpoint continues to the next rung exactly as an uninterrupted run would; the search plans its first rung at
``>= 2 x warmup_flops`` so that no rung is decided during warm-up.

Horizon unit (``horizon_unit``): ``flops`` (above; Liang et al.'s isoFLOP view) or ``samples`` (Li et al.: every
design trained for the same steps x batch, the comparison of architectures at equal data). The warm-up is counted
in the same unit as the horizon (``warmup_flops`` or ``warmup_samples``); a warm-up in the other unit is refused,
since a warm-up in FLOPs at a samples horizon (or the reverse) would again favour one end of the cost range.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unetnas.errors import UserError

HorizonUnit = Literal["flops", "samples"]
DEFAULT_WARMUP = {"flops": 2e11, "samples": 256}  # warm-up when the recipe names none, per horizon unit
ROOT = Path(__file__).resolve().parents[2]


def horizon_steps(horizon: float, unit: str, batch_size: int, train_flops_per_sample: float) -> int:
    """Optimizer steps of ``batch_size`` that fit within ``horizon`` (never more: the horizon is a budget).

    ``unit`` samples: ``floor(horizon / batch_size)``, the same for every design (Li et al.'s equal steps x batch);
    flops: ``floor(horizon / (train_flops_per_sample x batch_size))``, fewer steps for a dearer design.
    """
    per_step = batch_size * (1.0 if unit == "samples" else train_flops_per_sample)
    return math.floor(horizon / per_step + 1e-9)


DEFAULT_RECIPE = ROOT / "trials" / "short.yaml"


class ProxySettings(BaseModel):
    """Which alignment proxy scores the search's alignment rungs, and the local models it needs.

    ``auto``: the built-in world's TIFA on ``--data shapes``, validation loss only on prepared data. ``vqa_tifa``
    needs ``questions`` (a TIFA v1.0 file) and ``vqa`` (a BLIP / ViLT directory); ``clipscore`` needs ``clip`` (a
    CLIPModel directory) and ``questions`` (a TIFA v1.0 file, whose captions are used, or a text file, one prompt a
    line); both need ``vae`` on latent data. Relative paths are read from the recipe file's folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: Literal["auto", "tifa", "vqa_tifa", "clipscore", "val_loss"] = Field("auto", description="the proxy")
    questions: str | None = Field(None, description="TIFA v1.0 question file (vqa_tifa) or prompt file (clipscore)")
    vqa: str | None = Field(None, description="local BLIP / ViLT VQA model directory (vqa_tifa)")
    clip: str | None = Field(None, description="local CLIPModel directory (clipscore)")
    vae: str | None = Field(None, description="the AutoencoderKL the data was prepared with (latent data)")
    foils: int = Field(4, ge=1, description="foil prompts per prompt for the text-blind correction (real proxies)")


class SearchSettings(BaseModel):
    """Multi-fidelity schedule of `unetnas search` (successive halving over rungs of training FLOPs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    eta: int = Field(3, ge=2, description="reduction factor: the best 1/eta of a rung are promoted")
    n_top: int = Field(3, ge=1, description="candidates trained to the last rung (the Pareto set comes from them)")
    max_rungs: int = Field(4, ge=1, description="at most this many rungs")
    min_steps: int = Field(20, ge=1, description="rung 0 gives a typical member at least this many steps")
    tifa_rungs: tuple[int, ...] = Field((-1,), description="rungs (Python indices) scored by the TIFA proxy")
    tifa_prompts: int = Field(32, ge=1, description="evaluation prompts per TIFA score")
    tifa_images: int = Field(2, ge=1, description="images per prompt")
    proxy: ProxySettings = Field(default_factory=ProxySettings, description="the alignment proxy")


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # lr: .inf is refused at load

    name: str = Field("short", description="recipe name")
    # optimisation
    lr: float = Field(1e-3, gt=0, description="peak learning rate (short horizons, small models: higher than 8e-5)")
    horizon_unit: HorizonUnit = Field(
        "flops", description="unit of horizons and rungs: training FLOPs (isoFLOP) or training samples (steps x batch)"
    )
    warmup_flops: float | None = Field(
        None,
        ge=0,
        description="linear warm-up over this many training FLOPs of every candidate (horizon_unit flops; "
        "default 2e11), then constant",
    )
    warmup_samples: int | None = Field(
        None, ge=0, description="linear warm-up over this many training samples (horizon_unit samples; default 256)"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    grad_clip: float = Field(1.0, gt=0, description="global gradient-norm clip")
    batch_size: int = Field(32, gt=0, description="global batch (samples per optimizer step)")
    micro_batch: int = Field(32, gt=0, description="samples per rank per forward; accumulation fills the rest")
    caption_dropout: float = Field(0.1, ge=0, lt=1, description="share of captions replaced by '' (for CFG)")
    # diffusion (LDM's DDPM schedule)
    num_train_timesteps: int = Field(1000, gt=0, description="DDPM steps")
    beta_start: float = Field(0.00085, gt=0, description="LDM schedule start")
    beta_end: float = Field(0.012, gt=0, description="LDM schedule end")
    beta_schedule: Literal["scaled_linear", "linear", "squaredcos_cap_v2"] = Field("scaled_linear")
    # engine
    deepspeed: str = Field("deepspeed/cpu.json", description="DeepSpeed config, relative to this recipe file")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    # evaluation
    val_samples: int = Field(64, gt=0, description="fixed held-out batch for validation loss")
    val_timesteps: tuple[int, ...] = Field((100, 300, 500, 700, 900), min_length=1, description="fixed timesteps")
    sample_steps: int = Field(20, gt=0, description="DDIM steps for proxies and previews")
    cfg_scale: float = Field(4.0, ge=1, description="classifier-free guidance scale for proxies")
    world_pool: int = Field(8192, gt=0, description="built-in world: distinct training scenes (captions encoded once)")
    log_every: int = Field(10, gt=0, description="steps between metrics lines")
    search: SearchSettings = Field(default_factory=SearchSettings, description="multi-fidelity search schedule")
    source: Path | None = Field(None, exclude=True, description="file it was loaded from")

    @model_validator(mode="after")
    def _warmup_unit(self) -> Recipe:
        """The warm-up is in the horizon's unit: the other unit's field is refused, a missing one defaulted. (An
        after-validator: a before-validator would turn strict JSON validation into strict Python validation, which
        refuses the JSON arrays of tuple fields such as ``val_timesteps``.)"""
        unit = self.horizon_unit
        other = "warmup_samples" if unit == "flops" else "warmup_flops"
        if getattr(self, other) is not None:
            raise ValueError(
                f"{other}={getattr(self, other)}: a warm-up in the other unit; horizon_unit is {unit}, use warmup_{unit}"
            )
        if getattr(self, f"warmup_{unit}") is None:
            object.__setattr__(self, f"warmup_{unit}", DEFAULT_WARMUP[unit])  # frozen model, still validating
        return self

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.batch_size % self.micro_batch:
            raise ValueError(f"batch_size={self.batch_size}: must be a multiple of micro_batch={self.micro_batch}")
        if max(self.val_timesteps) >= self.num_train_timesteps:
            raise ValueError(f"val_timesteps: must be < num_train_timesteps={self.num_train_timesteps}")
        return self

    def warmup_steps(self, flops_per_step: float) -> int:
        """Warm-up length in optimizer steps for a candidate that spends ``flops_per_step`` training FLOPs a step.

        In the samples unit every candidate warms up for the same steps (``ceil(warmup_samples / batch_size)``).
        """
        if self.horizon_unit == "samples":
            return math.ceil(self.warmup_samples / self.batch_size - 1e-9) if self.warmup_samples else 0
        return math.ceil(self.warmup_flops / flops_per_step - 1e-9) if self.warmup_flops else 0

    def warmup(self) -> float:
        """The warm-up in the horizon unit (FLOPs or samples)."""
        return float(self.warmup_samples if self.horizon_unit == "samples" else self.warmup_flops)

    def horizon_steps(self, horizon: float, train_flops_per_sample: float) -> int:
        """Optimizer steps that fit within ``horizon`` (in ``horizon_unit``) for a candidate of this cost; never more.

        See the module-level ``horizon_steps``.
        """
        return horizon_steps(horizon, self.horizon_unit, self.batch_size, train_flops_per_sample)

    def horizon_flops(self, horizon: float, train_flops_per_sample: float) -> float:
        """Training FLOPs a candidate of this cost spends to reach ``horizon`` (in ``horizon_unit``): what it costs."""
        return self.horizon_steps(horizon, train_flops_per_sample) * self.batch_size * train_flops_per_sample

    def deepspeed_config(self, world_size: int, bf16: bool) -> dict[str, Any]:
        """The DeepSpeed JSON with batch and precision filled in from this recipe (the recipe owns them)."""
        base = (self.source.parent if self.source else DEFAULT_RECIPE.parent) / self.deepspeed
        from unetnas.io import parse_json

        try:
            text = base.read_text()
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read DeepSpeed config ({err.__class__.__name__})", source=base) from None
        cfg = parse_json(text, base)
        if not isinstance(cfg, dict):
            raise UserError("must be a JSON object (a DeepSpeed config)", source=base)
        owned = {
            "train_batch_size",
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
            "gradient_clipping",
            "bf16",
            "fp16",
            "optimizer",
            "scheduler",
        }
        clash = sorted(owned & set(cfg))
        if clash:
            raise UserError("set by the recipe, remove it from the DeepSpeed config", source=base, field=clash[0])
        if self.batch_size % world_size:
            raise UserError(f"must divide by the world size {world_size}", field="batch_size", value=self.batch_size)
        per_rank = self.batch_size // world_size
        micro = min(self.micro_batch, per_rank)
        if per_rank % micro:
            raise UserError(f"per-rank batch {per_rank} must be a multiple of it", field="micro_batch", value=micro)
        return {
            **cfg,
            "train_batch_size": self.batch_size,
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": per_rank // micro,
            "gradient_clipping": self.grad_clip,
            "bf16": {"enabled": bf16},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
        }


def load_recipe(path: str | Path | None = None) -> Recipe:
    from unetnas.io import load_model

    p = Path(path) if path is not None else DEFAULT_RECIPE
    recipe = load_model(p, Recipe)
    return recipe.model_copy(update={"source": p.resolve()})
