"""Executors run one rung of one candidate; the scheduler (``scheduler.py``) decides which.

An executor is told a ``RungJob`` (design, rung, optimizer steps to reach, whether to score alignment), says how
many steps the candidate already has (``start_steps``) and what its evaluation will cost at most (``eval_flops``),
so the search can reserve both in the ledger first, then runs the rung and reports a record. It keeps a ``Meter``
of the FLOPs it has spent up to date while it works, so whatever stops it (Ctrl-C, an error) the search settles
exactly what ran. Two executors: ``TrainingExecutor`` (here: DeepSpeed training, validation loss, alignment
scoring by the search's proxy) and ``ReplayExecutor`` (``replay.py``: answers from a ground-truth table).

A rung record (the trial's ``rung_K`` user attribute) carries: rung, steps, samples, train_flops, val_loss, gmacs,
params, wall_s, tifa, tifa_se, alignment, alignment_se (None where not scored), and eval_flops. A scored rung also
names its proxy (``proxy``: ``tifa``, ``vqa_tifa`` or ``clipscore``, never relabelled) and the FLOPs the proxy
itself accounted (``proxy_flops``; ``eval_flops`` = validation loss + ``proxy_flops``). ``tifa``/``tifa_se`` are
raw TIFA of a TIFA proxy only; CLIPScore's raw score is ``clipscore``/``clipscore_se``; ``alignment`` is always the
text-blind-corrected score. The trial folder gets ``samples.png``, the proxy's images at its last scored rung.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe, SearchSettings


@dataclass(frozen=True)
class RungJob:
    number: int  # trial number
    spec: UNetSpec
    rung: int
    target_steps: int  # optimizer steps at the end of the rung
    prev_steps: int  # steps at the end of the candidate's previous rung (0: first rung)
    tifa: bool  # score alignment at this rung (validation loss is always measured)
    seed: int  # the trial's training seed
    folder: Path | None = None  # the trial's checkpoint folder (training executors)
    fresh: bool = False  # the trial never started training: a checkpoint in its folder is not its own


@dataclass
class Meter:
    """FLOPs a job has spent so far (the executor updates it as it goes)."""

    train_flops: float = 0.0
    eval_flops: float = 0.0


@dataclass
class RungResult:
    status: str  # "done" | "stopped" (asked to stop mid-rung: the partial rung is kept to resume)
    record: dict[str, Any] = field(default_factory=dict)


ShouldStop = Callable[[], bool]  # asked at least every few seconds; True: stop, keep the partial rung to resume
OnStep = Callable[[dict[str, Any]], None]  # told each optimizer step's record (the trainer's metrics row)


class Executor(Protocol):
    wall: dict[str, float]  # seconds spent training and evaluating (the rest of a search is orchestration)

    def start_steps(self, job: RungJob) -> int: ...
    def eval_flops(self, job: RungJob) -> float: ...
    def run(self, job: RungJob, meter: Meter, should_stop: ShouldStop, on_step: OnStep | None = None) -> RungResult: ...


class Wrapper:
    """An executor that runs rungs its own way around an ``inner`` one (``launch.LaunchedExecutor``: on N ranks;
    ``worker.PacedExecutor``: paced in time): the inner executor's steps, evaluation cost and wall-time account,
    the wrapper's ``run``."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    @property
    def wall(self) -> dict[str, float]:
        return self.inner.wall

    def start_steps(self, job: RungJob) -> int:
        return self.inner.start_steps(job)

    def eval_flops(self, job: RungJob) -> float:
        return self.inner.eval_flops(job)


def base_record(job: RungJob, steps: int, batch_size: int) -> dict[str, Any]:
    c = cost(job.spec)
    return {
        "rung": job.rung,
        "steps": steps,
        "samples": steps * batch_size,
        "train_flops": c.train_flops_per_sample * steps * batch_size,
        "val_loss": None,
        "gmacs": c.gmacs,
        "params": c.params,
        "wall_s": None,
        "tifa": None,
        "tifa_se": None,
        "alignment": None,
        "alignment_se": None,
        "eval_flops": 0.0,
    }


def standard_error(values: Any) -> float | None:
    """Standard error of a mean over per-prompt scores (sample standard deviation / sqrt(n)); None below 2."""
    xs = [float(v) for v in values or []]
    if len(xs) < 2:
        return None
    m = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def alignment_fields(value: float, details: dict[str, Any]) -> dict[str, Any]:
    """The record's tifa / alignment fields from a TIFA proxy result: ``value`` is the (text-blind-corrected)
    alignment; raw TIFA and standard errors come from ``details`` (per-prompt scores where no SE is given).
    A standard error that cannot be estimated (one prompt) is None."""

    def finite(x: Any) -> float | None:
        return float(x) if x is not None and math.isfinite(float(x)) else None

    per_prompt = details.get("per_prompt_alignment", details.get("per_prompt"))
    align_se = finite(details["alignment_se"]) if "alignment_se" in details else standard_error(per_prompt)
    if "tifa" in details:  # the proxy reports raw TIFA beside the corrected alignment
        tifa, tifa_se = finite(details["tifa"]), finite(details.get("tifa_se"))
    else:  # an uncorrected proxy: its value is raw TIFA
        tifa, tifa_se = float(value), align_se
    return {
        "alignment": float(value),
        "alignment_se": align_se,
        "tifa": tifa,
        "tifa_se": tifa_se,
        "by_category": details.get("by_category"),
    }


def proxy_fields(res: Any) -> dict[str, Any]:
    """A scored rung's record fields from a proxy result (``ProxyResult``), named after the proxy."""
    d = res.details
    out = {"proxy": res.name, "proxy_flops": float(res.flops), **alignment_fields(res.value, d)}
    if "clipscore" in d:  # CLIPScore is not TIFA: its raw score keeps its own name
        out.update(
            tifa=None,
            tifa_se=None,
            clipscore=float(d["clipscore"]),
            clipscore_se=d.get("clipscore_se"),
            blind_clipscore=d.get("blind_clipscore"),
        )
    else:
        out["blind_tifa"] = d.get("blind_tifa")
    if "alignment_by_category" in d:
        out["alignment_by_category"] = d["alignment_by_category"]
    return out


SAMPLES_FILE = "samples.png"  # the trial folder's grid of the proxy's images (report and dashboard show it)


class TrainingExecutor:
    """Short-horizon DeepSpeed training to the job's steps, then validation loss and (where asked) alignment by the
    search's proxy (``proxy``: built by ``unetnas.proxies.select.build``; None: validation loss only; left out:
    built from the recipe on first need). The data source and the proxy are built once per executor (worker)."""

    def __init__(
        self,
        recipe: Recipe,
        settings: SearchSettings,
        data: str,
        resolution: int,
        text_len: int,
        seed: int = 0,
        proxy: Any = "recipe",
    ) -> None:
        self.recipe, self.settings, self.data, self.seed = recipe, settings, data, seed
        self.resolution, self.text_len = resolution, text_len
        self._source = None
        self._proxy = proxy
        self.wall = {"train": 0.0, "eval": 0.0}

    @property
    def source(self):
        if self._source is None:
            from unetnas.train.source import open_source

            self._source = open_source(
                self.data,
                seed=self.seed,
                pool=self.recipe.world_pool,
                resolution=self.resolution,
                text_len=self.text_len,
            )
        return self._source

    def scorer(self, spec: UNetSpec):
        """The alignment proxy (None: validation loss only)."""
        if isinstance(self._proxy, str):
            from unetnas.proxies.select import build

            self._proxy = build(self.recipe, self.data, spec)
        return self._proxy

    def _stub(self, spec: UNetSpec):
        from unetnas.proxies import Subject
        from unetnas.proxies.select import text_encoder_of

        if not hasattr(self, "_text_path"):
            self._text_path = text_encoder_of(self.data)
        return Subject(spec, None, self.recipe, self._text_path)

    def start_steps(self, job: RungJob) -> int:
        from unetnas.train import checkpoint

        assert job.folder is not None, "training jobs need a trial folder"
        state = job.folder / "checkpoint" / checkpoint.STATE
        if job.fresh and state.is_file():  # refused whatever it holds: a fresh trial wrote nothing yet
            raise UserError(
                "holds a checkpoint this trial never wrote (an earlier search's, under the same study "
                "name?); remove the folder or use another --study",
                source=job.folder / "checkpoint",
            )
        return int(checkpoint.read_state(job.folder / "checkpoint")["step"]) if state.is_file() else 0

    def eval_flops(self, job: RungJob) -> float:
        from unetnas.proxies import ValLoss

        stub, proxy = self._stub(job.spec), self.scorer(job.spec)
        return ValLoss().flops(stub) + (proxy.flops(stub) if job.tifa and proxy is not None else 0.0)

    def run(self, job: RungJob, meter: Meter, should_stop: ShouldStop, on_step: OnStep | None = None) -> RungResult:
        from unetnas.proxies import Subject, ValLoss
        from unetnas.train.trainer import Trainer

        t0 = time.perf_counter()
        trainer = Trainer(job.spec, self.recipe, self.source, job.folder, seed=job.seed)
        if self.start_steps(job):
            trainer.resume()
        before = trainer.train_flops

        def step(rec: dict[str, Any]) -> None:
            meter.train_flops = trainer.train_flops - before
            if on_step is not None:
                on_step(rec)

        try:
            trainer.train_to(job.target_steps, on_step=step, should_stop=should_stop)
        finally:
            meter.train_flops = trainer.train_flops - before
            self.wall["train"] += time.perf_counter() - t0
        if trainer.step < job.target_steps or should_stop():  # asked to stop: keep the (partial) rung, unscored
            trainer.save()
            return RungResult("stopped")
        t1 = time.perf_counter()
        try:
            subject = Subject.from_trainer(trainer)
            record = base_record(job, trainer.step, self.recipe.batch_size)
            val = ValLoss().score(subject)
            meter.eval_flops += val.flops
            record.update(val_loss=val.value, wall_s=trainer.wall_s)
            proxy = self.scorer(job.spec)
            if job.tifa and proxy is not None:
                res = proxy.score(subject)
                meter.eval_flops += res.flops
                record.update(proxy_fields(res))
                from unetnas.report.samples import write_samples

                write_samples(job.folder, proxy, res.details)  # samples.png + samples.json: prompts, judge answers
            record["eval_flops"] = meter.eval_flops
            trainer.save()
        finally:
            self.wall["eval"] += time.perf_counter() - t1
        return RungResult("done", record)
