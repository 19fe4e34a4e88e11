"""Trial checkpoints: safetensors weights, optimizer state (loaded with ``weights_only=True``), trainer state.

A checkpoint is written into a temporary folder and swapped in by rename, so a run that fails mid-write leaves
the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from unetnas.errors import UserError

WEIGHTS, STATE = "model.safetensors", "state.json"


def _optim_name(rank: int) -> str:
    return f"optimizer-rank{rank}.pt"


def save(ckpt: Path, *, model: torch.nn.Module, optimizer: Any, rank: int, state: dict[str, Any]) -> None:
    """Write ``ckpt`` atomically (rank 0 writes weights and state; every rank its optimizer shard)."""
    import torch.distributed as dist

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if dist.is_initialized():
        dist.barrier()
    torch.save(optimizer.state_dict(), tmp / _optim_name(rank))
    if rank == 0:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        (tmp / STATE).write_text(json.dumps(state, indent=1))
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        old = ckpt.with_name(ckpt.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()


def read_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / STATE
    if not path.is_file():
        raise UserError("not a trial checkpoint (no state.json)", source=ckpt)
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"state.json is not valid JSON ({err})", source=ckpt) from None


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    path = ckpt / WEIGHTS
    if not path.is_file():
        raise UserError("not a trial checkpoint (no model.safetensors)", source=ckpt)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise UserError(f"corrupt weights ({str(err).splitlines()[0]})", source=path) from None


def load(ckpt: Path, *, model: torch.nn.Module, optimizer: Any, rank: int) -> dict[str, Any]:
    state = read_state(ckpt)
    model.load_state_dict(load_weights(ckpt))
    path = ckpt / _optim_name(rank)
    if not path.is_file():
        raise UserError(f"no optimizer state for rank {rank} (saved with another world size?)", source=ckpt)
    try:
        with torch.serialization.safe_globals(_deepspeed_globals()):
            optim_state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: pickle, zip and weights_only errors vary
        raise UserError(f"corrupt optimizer state ({str(err).splitlines()[0][:120]})", source=path) from None
    _load_optimizer(optimizer, optim_state, rank)
    return state


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
