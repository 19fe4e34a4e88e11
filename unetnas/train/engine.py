"""DeepSpeed process-group set-up: the same code path for one CPU process (gloo) and many GPU ranks (nccl)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys

import torch

from unetnas.train.source import cache_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_distributed() -> tuple[int, int]:
    """Initialise torch.distributed through DeepSpeed once per process; returns (rank, world_size).

    Under the ``deepspeed`` launcher the rendezvous variables are set; a plain ``unetnas trial`` becomes a
    single-rank group on 127.0.0.1 (without them DeepSpeed falls back to MPI discovery and fails).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))  # JIT ops built once
    if "RANK" not in os.environ:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1",
                          LOCAL_RANK="0")  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints to stdout; keep it clean for --json
        import deepspeed
        from deepspeed.utils import logger

        logger.setLevel("WARNING")
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    return dist.get_rank(), dist.get_world_size()


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def all_mean(value: float) -> float:
    """Mean of a scalar over ranks (the logged loss is the global-batch loss)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device() if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()
