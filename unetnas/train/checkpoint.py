"""Trial checkpoints: safetensors weights, optimizer state (loaded with ``weights_only=True``), trainer state.

A checkpoint is written into a temporary folder and swapped in by rename, so a run that fails mid-write leaves
the previous checkpoint as it was. Reading back is validated in ``unetnas.artifacts`` (one-line errors naming the
file; nothing is changed by a read).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from unetnas.artifacts import (
    STATE,
    WEIGHTS,
    TrialState,
    checkpoint_dir,
    read_optimizer,
    read_state_json,
    read_weights,
    state_file,
)
from unetnas.errors import UserError
from unetnas.spec import UNetSpec

__all__ = ["STATE", "WEIGHTS", "TrialState", "check", "load", "load_weights", "read_state", "save"]


def _optim_name(rank: int) -> str:
    return f"optimizer-rank{rank}.pt"


def save(ckpt: Path, *, model: torch.nn.Module, optimizer: Any, rank: int, state: dict[str, Any]) -> None:
    """Write ``ckpt`` atomically (rank 0 writes weights and state; every rank its optimizer shard).

    Everything goes to ``<ckpt>.tmp`` and is flushed to disk; then the old checkpoint is renamed ``<ckpt>.old``, the
    new one into place, and the old one removed. A run killed at any point leaves a complete checkpoint: ``ckpt``,
    or between the two renames ``<ckpt>.old``, which readers fall back to (``artifacts.checkpoint_dir``) and the
    next save keeps until the new one is in place.
    """
    import torch.distributed as dist

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if dist.is_initialized():
        dist.barrier()
    torch.save(optimizer.state_dict(), tmp / _optim_name(rank))
    _fsync(tmp / _optim_name(rank))
    if rank == 0:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        for name in (WEIGHTS, STATE):
            _fsync(tmp / name)
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        old = ckpt.with_name(ckpt.name + ".old")
        if ckpt.exists():  # else a cut save left the last complete checkpoint in .old: keep it until ours is in place
            shutil.rmtree(old, ignore_errors=True)
            ckpt.rename(old)
        tmp.rename(ckpt)
        _fsync(ckpt.parent)
        shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder's entries) to disk, so a rename never exposes unwritten data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's ``state.json`` as a mapping, validated first (``artifacts.TrialState``): a missing,
    damaged, truncated or foreign file is a one-line ``UserError`` naming it."""
    return read_state_json(state_file(ckpt))[1]


def load_weights(ckpt: Path, spec: UNetSpec | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's UNet tensors (with ``spec``: checked to be that design's names and shapes)."""
    return read_weights(checkpoint_dir(ckpt) / WEIGHTS, spec)


def load(ckpt: Path, *, model: torch.nn.Module, optimizer: Any, rank: int) -> dict[str, Any]:
    """Load weights and this rank's optimizer state into ``model`` and ``optimizer``; returns the state (validated,
    as the mapping ``read_state`` gives). Every file is read and checked before anything is loaded."""
    ckpt = checkpoint_dir(ckpt)
    typed, state = read_state_json(state_file(ckpt))
    weights = load_weights(ckpt, typed.spec)
    optim_state = read_optimizer(ckpt / _optim_name(rank), _deepspeed_globals())
    model.load_state_dict(weights)
    try:
        _load_optimizer(optimizer, optim_state, rank)
    except (ValueError, KeyError, RuntimeError, IndexError) as err:  # torch's and DeepSpeed's size/key checks
        raise UserError(
            f"holds the optimizer state of another design or optimizer ({str(err).splitlines()[0][:160]})",
            source=ckpt / _optim_name(rank),
        ) from None
    return state


def check(ckpt: Path, rank: int) -> None:
    """Read every file of ``ckpt`` this rank loads (state, weights, optimizer state) and check it, loading nothing:
    for a resume, before training starts or any output is shown."""
    ckpt = checkpoint_dir(ckpt)
    weights = load_weights(ckpt, read_state_json(state_file(ckpt))[0].spec)
    _check_optimizer_fits(read_optimizer(ckpt / _optim_name(rank), _deepspeed_globals()), weights, ckpt, rank)


def _check_optimizer_fits(optim_state: dict[str, Any], weights: dict[str, torch.Tensor], ckpt: Path, rank: int) -> None:
    """A plain torch optimizer state (``state`` + ``param_groups``; ZeRO's sharded states are checked by DeepSpeed
    when loaded) must hold one parameter per weight tensor and moments of the weights' shapes: another design's
    optimizer file is refused in one line before training starts."""
    if not {"state", "param_groups"} <= optim_state.keys():
        return
    n = sum(len(g.get("params", ())) for g in optim_state["param_groups"])
    shapes = Counter(tuple(v.shape) for v in weights.values())
    moments = Counter(tuple(st["exp_avg"].shape) for st in optim_state["state"].values() if "exp_avg" in st)
    if n != len(weights) or moments - shapes:  # a parameter that never had a gradient has no moments yet
        raise UserError(
            f"holds the optimizer state of another design or optimizer ({n} parameters for {len(weights)} weight "
            "tensors, or moments of other shapes)",
            source=ckpt / _optim_name(rank),
        )


def _load_optimizer(optimizer: Any, optim_state: dict[str, Any], rank: int) -> None:
    """DeepSpeed's ZeRO and bf16 optimizers take a list of every rank's state (each rank reads its own entry) and
    restore their fp32 master weights from it; a plain torch optimizer takes its own state."""
    import contextlib
    import sys

    import torch.distributed as dist
    from deepspeed.runtime.base_optimizer import ZeROOptimizer

    if not isinstance(optimizer, ZeROOptimizer):
        optimizer.load_state_dict(optim_state)
        return
    states: list[Any] = [None] * (dist.get_world_size() if dist.is_initialized() else 1)
    states[rank] = optim_state
    with contextlib.redirect_stdout(sys.stderr):  # BF16_Optimizer prints while loading; keep stdout for --json
        optimizer.load_state_dict(states, load_from_fp32_weights=True)


def _deepspeed_globals() -> list:
    """Plain-data DeepSpeed classes inside ZeRO-1/2 and bf16 optimizer states, allowed for weights_only loading."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
