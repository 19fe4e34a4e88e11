"""DeepSpeed process-group set-up: the same code path for one CPU process (gloo) and many GPU ranks (nccl)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

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
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
        )
    with contextlib.redirect_stdout(sys.stderr), jit_builder(Path(os.environ["TORCH_EXTENSIONS_DIR"])):
        import deepspeed  # DeepSpeed prints to stdout; keep it clean for --json
        from deepspeed.utils import logger

        logger.setLevel("WARNING")
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    return dist.get_rank(), dist.get_world_size()


@contextlib.contextmanager
def jit_builder(ext_dir: Path) -> Iterator[None]:
    """Take part in JIT-building DeepSpeed's ops in ``ext_dir`` without ever waiting on a dead builder's lock.

    torch's ``FileBaton`` marks a build in progress with ``<ext_dir>/<op>/lock`` and every later build waits for
    that file to vanish, forever if its builder was killed. Here each builder holds an ``flock`` on its own marker
    file (``<ext_dir>/.builders/<pid>``) while it may build; the kernel drops it when the process dies. Under a
    directory-wide ``flock``, a process that finds no live marker removes the op locks left behind, then registers
    its own; ranks that start together never remove each other's locks.
    """
    builders = ext_dir / ".builders"
    try:
        builders.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable cache: nothing we may clean
        yield
        return
    mine = builders / str(os.getpid())
    with open(ext_dir / ".builders.lock", "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # markers are created and judged only under this lock
        try:
            if not any(_held(p) for p in builders.iterdir() if p != mine):
                for stale in ext_dir.glob("*/lock"):
                    stale.unlink(missing_ok=True)
            marker = open(mine, "a+")  # noqa: SIM115 (held until the build is over)
            fcntl.flock(marker, fcntl.LOCK_EX)
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)
        marker.close()


def _held(marker: Path) -> bool:
    """Whether a live process holds ``marker`` (its flock); a marker nobody holds is a dead builder's: removed."""
    try:
        with open(marker, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            marker.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


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
