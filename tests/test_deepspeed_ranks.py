"""Two CPU ranks under the `deepspeed` launcher (gloo, ZeRO-2) train like one rank at equal global batch, and a
two-rank trial stopped and continued from its checkpoint equals the uninterrupted one-rank trial.

The launcher runs `python -m unetnas` on each rank (`--module unetnas`) with `--no_local_rank`: by default it would
add `--local_rank=N` to the command line, which the CLI does not take.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import MINI_SPEC
from unetnas.io import save_model
from unetnas.train.recipe import load_recipe
from unetnas.train.source import WorldSource
from unetnas.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAUNCHER = shutil.which("deepspeed", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
pytestmark = pytest.mark.skipif(LAUNCHER is None, reason="no `deepspeed` launcher")

SPEC = MINI_SPEC  # tests/helpers.py
# global batch 8: one rank runs 2 micro-batches of 4 (gradient accumulation), each of two ranks one micro-batch of 4
RECIPE = {
    "batch_size": 8,
    "micro_batch": 4,
    "val_samples": 8,
    "val_timesteps": [100, 500, 900],
    "world_pool": 64,
    "log_every": 1,
    "deepspeed": str(ROOT / "trials" / "deepspeed" / "zero2.json"),
}
RTOL = 1e-4  # all-reduce and accumulation sum in different orders


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ranks")
    recipe = root / "recipe.yaml"
    recipe.write_text(json.dumps(RECIPE))
    return {"root": root, "spec": save_model(SPEC, root / "mini.yaml"), "recipe": recipe}


@pytest.fixture(scope="module")
def one_rank(files, tmp_path_factory) -> dict:
    """The in-process single-rank reference: losses, weights and validation loss at steps 4 and 6."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: OpenMP teams spin badly on 2 shared, loaded cores
    try:
        t = Trainer(
            SPEC,
            load_recipe(files["recipe"]),
            WorldSource(pool=64, resolution=16, text_len=16),
            tmp_path_factory.mktemp("one-rank"),
            seed=0,
        )
        ref = {}
        for step in (4, 6):
            t.train_to(step)
            ref[step] = {
                "history": list(t.history),
                "val": t.val_loss()[0],
                "weights": {k: v.detach().clone() for k, v in t.engine.module.state_dict().items()},
            }
        return ref
    finally:
        torch.set_num_threads(saved)


def launch(files: dict, out: Path, steps: int, *more: str, port: int) -> dict:
    """`deepspeed --num_gpus 2 ... unetnas trial` on two CPU ranks; returns the JSON summary."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"  # 2 ranks x 1 thread on 2 cores
    cmd = [
        LAUNCHER,
        "--no_local_rank",
        "--num_gpus",
        "2",
        "--master_port",
        str(port),
        "--module",
        "unetnas",
        "trial",
        str(files["spec"]),
        "--steps",
        str(steps),
        "--recipe",
        str(files["recipe"]),
        "--out",
        str(out),
        "--json",
        *more,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=files["root"], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = json_objects(proc.stdout)
    same = [{k: v for k, v in s.items() if k != "wall_s"} for s in summaries]  # wall_s is per rank
    assert summaries and all(s == same[0] for s in same), proc.stdout[-3000:]
    return summaries[0]


def json_objects(text: str) -> list[dict]:
    """Every JSON object in ``text``: each rank prints the summary, and two ranks' lines can run together."""
    decoder, found, i = json.JSONDecoder(), [], text.find('{"')
    while i >= 0:
        obj, end = decoder.raw_decode(text, i)
        found.append(obj)
        i = text.find('{"', end)
    return found


def check_against(out: Path, ref: dict, steps: int) -> None:
    ckpt = out / "checkpoint"
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors",
        "state.json",
        "optimizer-rank0.pt",
        "optimizer-rank1.pt",
    }
    state = json.loads((ckpt / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == steps
    torch.testing.assert_close(torch.tensor(state["history"]), torch.tensor(ref["history"]), rtol=RTOL, atol=0)
    weights = load_file(str(ckpt / "model.safetensors"))
    assert weights.keys() == ref["weights"].keys()
    for k, v in weights.items():
        torch.testing.assert_close(v, ref["weights"][k], rtol=RTOL, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def two_ranks(files, free_port) -> tuple[Path, dict]:
    out = files["root"] / "two-ranks"
    return out, launch(files, out, 4, port=free_port())


def test_two_ranks_match_one_rank(two_ranks, one_rank) -> None:
    out, summary = two_ranks
    ref = one_rank[4]
    check_against(out, ref, 4)
    assert summary["steps"] == 4 and summary["samples"] == 32
    assert summary["val_loss"] == pytest.approx(ref["val"], rel=RTOL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", s) for s in range(1, 5)] + [
        ("val", 4)
    ]  # rank 0 only
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref["history"]), rtol=RTOL, atol=0)
    shards = [torch.load(out / "checkpoint" / f"optimizer-rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(s["partition_count"] == [2] or s["partition_count"] == 2 for s in shards)  # ZeRO-2: each rank its half


@pytest.mark.slow
def test_two_ranks_stopped_then_continued_equal_one_uninterrupted_rank(
    files, two_ranks, one_rank, free_port, tmp_path
) -> None:
    out = tmp_path / "trial"
    shutil.copytree(two_ranks[0], out)
    summary = launch(files, out, 6, "--resume", port=free_port())
    assert (summary["steps"], summary["new_steps"]) == (6, 2)
    check_against(out, one_rank[6], 6)
    assert summary["val_loss"] == pytest.approx(one_rank[6]["val"], rel=RTOL)
