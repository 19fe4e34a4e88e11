"""Short-horizon text-to-image diffusion training of one candidate on the DeepSpeed engine.

Epsilon-prediction DDPM on LDM's schedule, AdamW with linear warmup then constant LR, caption dropout for
classifier-free guidance, gradient clipping, fp32 on CPU and bf16 on GPU. Progress is measured in training FLOPs:
``train_flops = cost(spec).train_flops_per_sample x samples``. Every step draws its batch, noise and timesteps
from generators keyed by (seed, step), so a run stopped at a FLOPs mark and continued from its checkpoint repeats
the uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unetnas.build import build_unet
from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.spec import UNetSpec
from unetnas.train import checkpoint
from unetnas.train.engine import all_mean, device, ensure_distributed
from unetnas.train.recipe import Recipe
from unetnas.train.source import Source, step_generator


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the trial fails (its weights are never scored or exported)."""


def noise_scheduler(recipe: Recipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=recipe.num_train_timesteps,
        beta_start=recipe.beta_start,
        beta_end=recipe.beta_end,
        beta_schedule=recipe.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
    )


def check_fits(spec: UNetSpec, source: Source) -> None:
    """The candidate must take the data's latents and text states."""
    pairs = [
        ("latent_channels", spec.latent_channels, source.channels),
        ("latent_size", spec.latent_size, source.size),
        ("cross_attention_dim", spec.cross_attention_dim, source.text_dim),
        ("text_len", spec.text_len, source.text_len),
    ]
    for field, have, want in pairs:
        if have != want:
            raise UserError(f"the data needs {want}", source=spec.name or "spec", field=field, value=have)


class Trainer:
    """One candidate's training state; ``train_to`` advances it, ``save``/``resume`` move it across processes."""

    def __init__(self, spec: UNetSpec, recipe: Recipe, source: Source, out_dir: str | Path, seed: int = 0) -> None:
        check_fits(spec, source)
        self.spec, self.recipe, self.source, self.seed = spec, recipe, source, seed
        self.out = Path(out_dir)
        self.rank, self.world = ensure_distributed()  # imports DeepSpeed first, its stdout sent to stderr
        import deepspeed

        self.device = device()
        self.bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and self.device.type == "cuda")
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.cost = cost(spec)
        self.flops_per_step = self.cost.train_flops_per_sample * recipe.batch_size
        unet = build_unet(spec, seed=seed)
        opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
        warm = recipe.warmup_steps(self.flops_per_step)  # equal warm-up (FLOPs or samples) for every candidate
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        ds_config = recipe.deepspeed_config(self.world, self.bf16)
        self.engine, self.optimizer, _, self.lr_sched = deepspeed.initialize(
            model=unet, optimizer=opt, lr_scheduler=sched, config=ds_config
        )
        self.micro, self.accum = ds_config["train_micro_batch_size_per_gpu"], ds_config["gradient_accumulation_steps"]
        if self.world == 1 and self.engine.zero_optimization_stage() == 0:
            # One rank: DeepSpeed's gradient all-reduce is an identity that still runs gloo (9.5 ms a step on CPU,
            # BENCHMARKS.md "Trials"); the sum over one rank divided by one changes no gradient.
            self.engine.enable_backward_allreduce = False
        self.ddpm = noise_scheduler(recipe)
        self.alphas = self.ddpm.alphas_cumprod.to(self.device)
        self.step, self.wall_s, self.history = 0, 0.0, []  # history: per-step global-batch losses

    # -- accounting ------------------------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        return self.step * self.recipe.batch_size

    @property
    def train_flops(self) -> float:
        return self.cost.train_flops_per_sample * self.samples

    def steps_for(self, flops: float) -> int:
        """Steps whose FLOPs fit within ``flops`` (never more: the horizon is a budget)."""
        return math.floor(flops / self.flops_per_step + 1e-9)

    # -- training --------------------------------------------------------------------------------------------
    def _noised(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def _forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.engine(x.to(self.dtype), t, encoder_hidden_states=text.to(self.dtype)).sample.float()

    def _train_step(self) -> float:
        r, n = self.recipe, self.recipe.batch_size
        x0, text = self.source.global_batch(self.step, n)
        g = step_generator(self.seed, self.step, tag=2)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, r.num_train_timesteps, (n,), generator=g)
        drop = torch.rand(n, generator=g) < r.caption_dropout
        text = torch.where(drop.view(-1, 1, 1), self.source.uncond.expand_as(text), text)
        per_rank = n // self.world
        lo = self.rank * per_rank
        losses = []
        for k in range(self.accum):
            sl = slice(lo + k * self.micro, lo + (k + 1) * self.micro)
            xb, nb, tb = x0[sl].to(self.device), noise[sl].to(self.device), t[sl].to(self.device)
            pred = self._forward(self._noised(xb, nb, tb), tb, text[sl].to(self.device))
            loss = F.mse_loss(pred, nb)
            self.engine.backward(loss)
            self.engine.step()
            losses.append(loss.item())
        self.step += 1
        loss = all_mean(sum(losses) / len(losses))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"non-finite training loss {loss} at step {self.step} (lr {r.lr:g})")
        return loss

    def train_to(
        self,
        step: int,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Train until ``step`` (or until ``should_stop()``); metrics go to metrics.jsonl every ``log_every``."""
        self.engine.train()
        t_window, s_window = time.perf_counter(), self.step
        while self.step < step:
            if should_stop is not None and should_stop():
                break
            t0 = time.perf_counter()
            loss = self._train_step()
            self.wall_s += time.perf_counter() - t0
            self.history.append(loss)
            done = self.step == step or self.step % self.recipe.log_every == 0
            if done or on_step is not None:
                now = time.perf_counter()
                rate = (self.step - s_window) * self.recipe.batch_size / max(now - t_window, 1e-9)
                rec = {
                    "kind": "train",
                    "step": self.step,
                    "samples": self.samples,
                    "train_flops": self.train_flops,
                    "loss": loss,
                    "lr": self.lr_sched.get_last_lr()[0],
                    "samples_per_s": rate,
                }
                if done:
                    self.log(rec)
                    t_window, s_window = now, self.step
                if on_step is not None:
                    on_step(rec)

    @torch.no_grad()
    def val_loss(self) -> tuple[float, float]:
        """MSE on the fixed held-out batch at fixed timesteps with fixed noise; returns (loss, FLOPs spent)."""
        r = self.recipe
        x0, text = self.source.val_batch(r.val_samples)
        g = step_generator(self.seed, -1, tag=3)
        module = self.engine.module
        module.eval()
        total = 0.0
        for ts in r.val_timesteps:
            noise = torch.randn(x0.shape, generator=g)
            t = torch.full((len(x0),), ts, dtype=torch.long)
            xb, nb, tb = x0.to(self.device), noise.to(self.device), t.to(self.device)
            pred = module(
                self._noised(xb, nb, tb).to(self.dtype), tb, encoder_hidden_states=text.to(self.device, self.dtype)
            )
            total += F.mse_loss(pred.sample.float(), nb).item()
        module.train()
        loss = total / len(r.val_timesteps)
        self.log({"kind": "val", "step": self.step, "train_flops": self.train_flops, "val_loss": loss})
        return loss, float(self.cost.flops * len(x0) * len(r.val_timesteps))

    # -- persistence -----------------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "samples": self.samples,
            "train_flops": self.train_flops,
            "wall_s": self.wall_s,
            "seed": self.seed,
            "world_size": self.world,
            "history": self.history,
            "lr_sched": self.lr_sched.state_dict() | {"lr_lambdas": None},
            "spec": self.spec.model_dump(mode="json"),
            "recipe": self.recipe.model_dump(mode="json"),
            "data": self.source.describe(),
        }

    def save(self) -> Path:
        ckpt = self.out / "checkpoint"
        checkpoint.save(ckpt, model=self.engine.module, optimizer=self.optimizer, rank=self.rank, state=self.state())
        return ckpt

    def resume(self) -> None:
        """Continue from ``out/checkpoint`` (weights, optimizer, LR schedule, step counters)."""
        ckpt = self.out / "checkpoint"
        if checkpoint.read_state(ckpt)["spec"] != self.spec.model_dump(mode="json"):  # before loading weights
            raise UserError("holds a different spec; use another --out or the same spec", source=ckpt)
        st = checkpoint.load(ckpt, model=self.engine.module, optimizer=self.optimizer, rank=self.rank)
        sched = dict(st["lr_sched"])
        sched.pop("lr_lambdas", None)
        self.lr_sched.load_state_dict({**self.lr_sched.state_dict(), **sched})
        self.step, self.wall_s, self.history = st["step"], st["wall_s"], list(st["history"])
