"""The trial trainer on a very small UNet (111K params, 16x16 world scenes, 64-scene pool): stop/continue equals
uninterrupted, golden losses, FLOPs accounting, and learning.

Golden numbers live in tests/golden/tiny_losses.json. Regenerate them (after an intended change of the model,
the world, the text encoder or the training recipe) with

    UNETNAS_REGEN_GOLDEN=1 pytest tests/test_trainer.py -k golden
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import MINI_SPEC
from unetnas.cost import cost
from unetnas.train.recipe import load_recipe
from unetnas.train.source import WorldSource
from unetnas.train.trainer import Trainer

GOLDEN = Path(__file__).parent / "golden" / "tiny_losses.json"
REGEN = "UNETNAS_REGEN_GOLDEN=1 pytest tests/test_trainer.py -k golden"

SPEC = MINI_SPEC  # tests/helpers.py
RECIPE = load_recipe().model_copy(
    update=dict(batch_size=8, micro_batch=8, val_samples=8, val_timesteps=(100, 500, 900), log_every=1)
)
N = 6  # steps of the golden run


@pytest.fixture(scope="module")
def world() -> WorldSource:
    return WorldSource(pool=64, resolution=16, text_len=16)


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory) -> Trainer:
    t = Trainer(SPEC, RECIPE, world, tmp_path_factory.mktemp("whole"), seed=0)
    t.train_to(N)
    return t


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.engine.module.state_dict().items()}


def test_stopped_then_continued_equals_uninterrupted(world, uninterrupted, tmp_path) -> None:
    first = Trainer(SPEC, RECIPE, world, tmp_path, seed=0)
    first.train_to(N // 2)
    first.save()
    del first
    second = Trainer(SPEC, RECIPE, world, tmp_path, seed=0)  # a new engine, as in a new process
    second.resume()
    assert second.step == N // 2 and len(second.history) == N // 2
    second.train_to(N)
    assert second.step == N and second.samples == uninterrupted.samples
    torch.testing.assert_close(torch.tensor(second.history), torch.tensor(uninterrupted.history), rtol=0, atol=0)
    a, b = weights(uninterrupted), weights(second)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    assert second.lr_sched.get_last_lr() == uninterrupted.lr_sched.get_last_lr()
    # the checkpoint's weights are the trained ones, and a third trainer reads the step count back
    second.save()
    third = Trainer(SPEC, RECIPE, world, tmp_path, seed=0)
    third.resume()
    assert third.step == N and third.history == second.history
    for k, v in weights(third).items():
        assert torch.equal(v, b[k]), k


def test_golden_losses(uninterrupted) -> None:
    losses = uninterrupted.history
    assert len(losses) == N and all(math.isfinite(x) for x in losses)
    if os.environ.get("UNETNAS_REGEN_GOLDEN") or not GOLDEN.is_file():
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(
            json.dumps(
                {
                    "about": "per-step global-batch losses of a seeded trial (tests/test_trainer.py)",
                    "regenerate": REGEN,
                    "torch": torch.__version__,
                    "seed": 0,
                    "spec": SPEC.model_dump(mode="json"),
                    "recipe": RECIPE.model_dump(mode="json"),
                    "data": {"kind": "shapes", "pool": 64, "resolution": 16, "text_len": 16},
                    "losses": losses,
                },
                indent=1,
            )
            + "\n"
        )
        pytest.skip(f"wrote {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["spec"] == SPEC.model_dump(mode="json"), f"the spec changed; if intended: {REGEN}"
    trains = set(RECIPE.model_dump(mode="json")) - {
        "name",
        "search",
        "sample_steps",
        "cfg_scale",
        "world_pool",
        "log_every",
    }
    now = {k: v for k, v in RECIPE.model_dump(mode="json").items() if k in trains}
    assert {k: golden["recipe"].get(k) for k in trains} == now, f"the recipe changed; if intended: {REGEN}"
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(golden["losses"], dtype=torch.float64),
        rtol=1e-4,
        atol=0,
        msg=lambda m: f"{m}\nlosses differ from {GOLDEN.name}; if intended: {REGEN}",
    )


def test_train_flops_is_cost_per_sample_times_samples(uninterrupted) -> None:
    t = uninterrupted
    per_sample = cost(SPEC).train_flops_per_sample
    assert t.samples == N * RECIPE.batch_size
    assert t.train_flops == per_sample * t.samples
    assert t.flops_per_step == per_sample * RECIPE.batch_size
    assert t.state()["train_flops"] == t.train_flops and t.state()["samples"] == t.samples
    records = [json.loads(line) for line in (t.out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, N + 1))
    assert all(r["train_flops"] == per_sample * r["samples"] for r in train)
    assert [r["loss"] for r in train] == t.history


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, 10**6), frac=st.floats(0, 1, exclude_max=True))
def test_steps_for_never_exceeds_the_horizon(uninterrupted, k, frac) -> None:
    t = uninterrupted
    fps = t.flops_per_step
    for horizon in (k * fps, (k + frac) * fps, math.nextafter(k * fps, 0.0), k * fps * (1 - 1e-9)):
        steps = t.steps_for(horizon)
        assert steps >= 0
        assert steps * fps <= horizon * (1 + 1e-9), (horizon, steps)  # a budget (up to float rounding)
        assert (steps + 1) * fps > horizon  # and the most steps that fit
    assert t.steps_for(k * fps) == k


def test_loss_and_val_loss_fall(world, tmp_path) -> None:
    t = Trainer(SPEC, RECIPE, world, tmp_path, seed=1)
    before, _ = t.val_loss()
    t.train_to(40)
    after, eval_flops = t.val_loss()
    h = t.history
    assert len(h) == 40 and all(math.isfinite(x) for x in h)
    assert sum(h[-5:]) / 5 < 0.9 * sum(h[:5]) / 5, h
    assert h[-1] < h[0]
    assert after < 0.9 * before, (before, after)
    assert eval_flops == cost(SPEC).flops * RECIPE.val_samples * len(RECIPE.val_timesteps)
    again, _ = t.val_loss()  # fixed batch, timesteps and noise: the same number for the same weights
    assert again == after


@pytest.mark.parametrize(("zero", "precision"), [("zero2.json", "fp32"), ("cpu.json", "bf16")])
def test_resume_with_zero_and_bf16_optimizers(world, tmp_path, zero, precision) -> None:
    """DeepSpeed wraps the optimizer for ZeRO-1/2 and bf16: its state holds DeepSpeed classes and loads per rank."""
    recipe = RECIPE.model_copy(
        update={
            "deepspeed": str(Path(__file__).resolve().parents[1] / "trials" / "deepspeed" / zero),
            "precision": precision,
        }
    )
    whole = Trainer(SPEC, recipe, world, tmp_path / "whole", seed=0)
    whole.train_to(4)
    part = Trainer(SPEC, recipe, world, tmp_path / "part", seed=0)
    part.train_to(2)
    part.save()
    again = Trainer(SPEC, recipe, world, tmp_path / "part", seed=0)
    again.resume()
    again.train_to(4)
    assert again.history == whole.history
    a, b = weights(whole), weights(again)
    for k in a:
        assert torch.equal(a[k], b[k]), k
