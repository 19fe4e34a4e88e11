"""One trial on N ranks: `unetnas worker --gpus N` runs each rung through the DeepSpeed launcher.

The worker (the coordinator: the only process that talks to the study and the ledger) writes the rung to
``<trial>/rung_job.json`` and starts ``deepspeed --num_gpus N --module unetnas.search.launch <job>``; every rank
trains its share of the global batch (``TrainingExecutor``: gloo on CPU, NCCL on GPUs). Rank 0 writes the meter to
``<trial>/rung_progress.json`` at every step (the coordinator's heartbeat reports it) and the result to
``<trial>/rung_result.json``. Ctrl-C reaches the ranks as a ``STOP`` file; they agree on the step to stop at with an
all-reduce, checkpoint and exit. Ranks whose coordinator died stop at the next step without writing anything.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from unetnas.search.executor import Meter, OnStep, RungJob, RungResult, ShouldStop, Wrapper

POLL_S = 0.5


def _launcher() -> str:
    found = shutil.which("deepspeed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        from unetnas.errors import UserError

        raise UserError("needs DeepSpeed's `deepspeed` launcher on the PATH", field="--gpus")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class LaunchedExecutor(Wrapper):
    """``TrainingExecutor`` semantics (``inner``), each rung run on ``ranks`` processes by the DeepSpeed launcher."""

    def __init__(self, inner: Any, cfg: Any, ranks: int) -> None:
        super().__init__(inner)
        self.cfg, self.ranks = cfg, ranks
        self.launcher = _launcher()

    def run(self, job: RungJob, meter: Meter, should_stop: ShouldStop, on_step: OnStep | None = None) -> RungResult:
        assert job.folder is not None, "training jobs need a trial folder"
        job.folder.mkdir(parents=True, exist_ok=True)
        files = {k: job.folder / f"rung_{k}.json" for k in ("job", "progress", "result")}
        stop = job.folder / "STOP"
        for f in (*files.values(), stop):
            f.unlink(missing_ok=True)
        ex = self.inner
        _write(
            files["job"],
            {
                "spec": job.spec.model_dump(mode="json"),
                "rung": job.rung,
                "target": job.target_steps,
                "prev": job.prev_steps,
                "tifa": job.tifa,
                "seed": job.seed,
                "folder": str(job.folder),
                "fresh": job.fresh,
                "recipe": ex.recipe.model_dump(mode="json"),
                "recipe_source": str(ex.recipe.source) if ex.recipe.source else None,
                "data": ex.data,
                "resolution": ex.resolution,
                "text_len": ex.text_len,
                "executor_seed": ex.seed,
                "coordinator": os.getpid(),
            },
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        }
        cmd = [
            self.launcher,
            "--no_local_rank",
            "--num_gpus",
            str(self.ranks),
            "--master_port",
            str(_free_port()),
            "--module",
            "unetnas.search.launch",
            str(files["job"]),
        ]
        log = open(job.folder / "ranks.log", "ab")  # noqa: SIM115 (closed below)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                time.sleep(POLL_S)
                self._read(files["progress"], meter)
                if should_stop() and not stop.exists():
                    stop.touch()
        except BaseException:
            stop.touch()  # Ctrl-C twice, or an error here: let the ranks checkpoint and go
            proc.wait()
            raise
        finally:
            log.close()
            self.wall["train"] += time.perf_counter() - t0
        self._read(files["progress"], meter)
        if not files["result"].is_file():
            tail = (job.folder / "ranks.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"the {self.ranks} ranks exited with {proc.returncode}: {' | '.join(tail)[-400:]}")
        res = json.loads(files["result"].read_text())
        meter.train_flops, meter.eval_flops = res["train_flops"], res["eval_flops"]
        if res.get("error"):
            raise RuntimeError(res["error"])
        return RungResult(res["status"], res.get("record") or {})

    @staticmethod
    def _read(path: Path, meter: Meter) -> None:
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        meter.train_flops, meter.eval_flops = d["train_flops"], d["eval_flops"]


def rank_main(job_path: str) -> None:
    """One rank of a launched rung (run by the DeepSpeed launcher as ``python -m unetnas.search.launch JOB``)."""
    import torch
    import torch.distributed as dist

    from unetnas.search.executor import TrainingExecutor
    from unetnas.search.ledger import _alive
    from unetnas.spec import UNetSpec
    from unetnas.train.engine import ensure_distributed
    from unetnas.train.recipe import Recipe

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    d = json.loads(Path(job_path).read_text())
    rank, _world = ensure_distributed()
    recipe = Recipe.model_validate(d["recipe"])
    if d["recipe_source"]:
        recipe = recipe.model_copy(update={"source": Path(d["recipe_source"])})
    ex = TrainingExecutor(
        recipe, recipe.search, d["data"], resolution=d["resolution"], text_len=d["text_len"], seed=d["executor_seed"]
    )
    folder = Path(d["folder"])
    job = RungJob(
        0,
        UNetSpec.model_validate(d["spec"]),
        d["rung"],
        d["target"],
        d["prev"],
        d["tifa"],
        d["seed"],
        folder=folder,
        fresh=d["fresh"],
    )
    meter = Meter()
    coordinator = int(d["coordinator"])

    def stop() -> bool:
        if not _alive(coordinator, ""):
            os._exit(3)  # orphaned: the study has settled this rung elsewhere; write nothing
        flag = torch.tensor([1.0 if (folder / "STOP").exists() else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item())

    def progress(_rec: dict[str, Any] | None = None) -> None:
        if rank == 0:
            _write(folder / "rung_progress.json", {"train_flops": meter.train_flops, "eval_flops": meter.eval_flops})

    out: dict[str, Any]
    try:
        res = ex.run(job, meter, stop, progress)
        out = {"status": res.status, "record": res.record}
    except Exception as err:  # noqa: BLE001 (reported to the coordinator, which fails the trial with it)
        out = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:500]}
    if rank == 0:
        progress()
        _write(folder / "rung_result.json", {**out, "train_flops": meter.train_flops, "eval_flops": meter.eval_flops})


if __name__ == "__main__":
    rank_main(sys.argv[1])
