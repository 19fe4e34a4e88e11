"""Replay: answer a rung from a ground-truth table instead of training, so a search runs in milliseconds per rung.

The table (written by ``python -m bench ground-truth``) holds, for every member of a space, one or more training
runs (seeds) with checkpoints at geometric training FLOPs; each checkpoint has the validation loss, raw TIFA,
text-blind-corrected alignment and their standard errors, and the wall time and evaluation cost measured there::

    {"version": 1, "meta": {"space": "space/tiny.yaml", "recipe": "trials/short.yaml", "proxy": {...}, ...},
     "designs": [{"id": "d00", "spec": {...UNetSpec...}, "params": 0, "gmacs": 0.0, ...}],
     "runs": [{"design": "d00", "seed": 0, "checkpoints": [{"train_flops": 0.0, "steps": 0, "val_loss": 0.0,
              "tifa": 0.0, "tifa_se": 0.0, "alignment": 0.0, "alignment_se": 0.0, "wall_s": 0.0, ...}]}]}

Designs are found by spec equality ignoring ``name``. A candidate's values at the FLOPs its rung trains to are
interpolated linearly in log(training FLOPs) between the two nearest checkpoints (extrapolated from the end segment
within a factor 2 of the table's range, refused beyond). Where a design has several runs, each search seed reads one
of them (chosen by hashing the seed and the design), so replays with different seeds see the table's seed noise.
``ReplayExecutor`` charges exactly what a real search would (training from the spec's cost, evaluation from the
plan's estimates), so the very same scheduler, sampler, ledger and study code run in both.

``replay_search`` runs a whole seeded search in-process (in-memory Optuna storage and ledger by default) and returns
its summary: the benchmark entry point.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unetnas.cost import cost
from unetnas.errors import UserError, from_validation_error
from unetnas.search import plan as P
from unetnas.search.executor import Meter, RungJob, RungResult, base_record
from unetnas.search.study import design_key
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe, SearchSettings

ROOT = Path(__file__).resolve().parents[2]
EXTRAPOLATE = 2.0  # values are extrapolated at most this factor of training FLOPs beyond the table's checkpoints
LOG_FIELDS = ("val_loss", "tifa", "tifa_se", "alignment", "alignment_se")  # interpolated in log(FLOPs)
LINEAR_FIELDS = ("wall_s", "eval_s")  # proportional to FLOPs: interpolated linearly


class TableCheckpoint(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    train_flops: float = Field(..., gt=0)
    steps: int = Field(..., ge=0)
    samples: int | None = None
    wall_s: float | None = None
    eval_flops: float | None = None
    eval_s: float | None = None
    val_loss: float
    tifa: float | None = None
    tifa_se: float | None = None
    alignment: float | None = None
    alignment_se: float | None = None


class TableRun(BaseModel):
    model_config = ConfigDict(extra="ignore")

    design: str
    seed: int
    checkpoints: list[TableCheckpoint] = Field(..., min_length=1)


class TableDesign(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    spec: UNetSpec
    text_blind: bool = False
    tags: list[str] = Field(default_factory=list)


class Table(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = Field(..., ge=1, le=2)  # 2: bench/ground_truth.py v2 (a superset: horizon_unit, partial_runs)
    meta: dict[str, Any] = Field(default_factory=dict)
    designs: list[TableDesign] = Field(..., min_length=1)
    runs: list[TableRun] = Field(..., min_length=1)


@dataclass
class GroundTruth:
    """A loaded ground-truth table, indexed by design."""

    path: Path
    table: Table
    digest: str

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read and check a table; any problem is a one-line ``UserError`` naming the file."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as err:
            raise UserError(
                f"cannot read the ground-truth table ({err.strerror})", field="--replay", value=str(p)
            ) from None
        try:
            table = Table.model_validate(json.loads(raw))
        except ValueError as err:  # JSON syntax
            if isinstance(err, ValidationError):
                raise from_validation_error(err, source=p) from None
            raise UserError(f"is not JSON ({err})", source=p) from None
        gt = cls(p, table, hashlib.blake2b(raw, digest_size=8).hexdigest())
        gt._index()
        return gt

    def _index(self) -> None:
        self.by_key = {design_key(d.spec): d for d in self.table.designs}
        self.runs: dict[str, list[TableRun]] = {}
        for r in self.table.runs:
            self.runs.setdefault(r.design, []).append(r)
        for runs in self.runs.values():
            runs.sort(key=lambda r: r.seed)
            for r in runs:
                r.checkpoints.sort(key=lambda c: c.train_flops)

    def meta_path(self, key: str) -> Path | None:
        """A path in ``meta`` (relative ones are relative to the repository root, where the table was made)."""
        value = self.table.meta.get(key)
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else ROOT / p

    def design(self, spec: UNetSpec) -> TableDesign:
        d = self.by_key.get(design_key(spec))
        if d is None:
            raise UserError(
                f"design {spec.name or '?'} is not in the ground-truth table (its space: "
                f"{self.table.meta.get('space')})",
                field="--replay",
                value=str(self.path),
            )
        return d

    def run_for(self, spec: UNetSpec, seed: int) -> TableRun:
        """The run a search with ``seed`` reads for this design (the same for every rung of the candidate)."""
        d = self.design(spec)
        runs = self.runs[d.id]
        pick = int(hashlib.blake2b(f"{seed}/{d.id}".encode(), digest_size=8).hexdigest(), 16) % len(runs)
        return runs[pick]

    def span(self, spec: UNetSpec) -> tuple[float, float]:
        """(lowest, highest) checkpoint FLOPs over the design's runs that every run covers."""
        runs = self.runs[self.design(spec).id]
        return max(r.checkpoints[0].train_flops for r in runs), min(r.checkpoints[-1].train_flops for r in runs)

    def at(self, spec: UNetSpec, train_flops: float, seed: int) -> dict[str, float | None]:
        """The design's values after ``train_flops`` training FLOPs, in the run ``seed`` reads."""
        run = self.run_for(spec, seed)
        cks = run.checkpoints
        lo, hi = cks[0].train_flops, cks[-1].train_flops
        if not lo / EXTRAPOLATE <= train_flops <= hi * EXTRAPOLATE:
            raise UserError(
                f"covers {lo:.3g}..{hi:.3g} training FLOPs of design {self.design(spec).id}; "
                f"{train_flops:.3g} is out of reach",
                field="--replay",
                value=str(self.path),
            )
        if len(cks) == 1:
            return {f: getattr(cks[0], f) for f in LOG_FIELDS + LINEAR_FIELDS}
        xs = [c.train_flops for c in cks]
        i = min(max(bisect.bisect_left(xs, train_flops), 1), len(cks) - 1)
        a, b = cks[i - 1], cks[i]
        out: dict[str, float | None] = {}
        for f in LOG_FIELDS + LINEAR_FIELDS:
            va, vb = getattr(a, f), getattr(b, f)
            if va is None or vb is None:
                out[f] = None
                continue
            if f in LOG_FIELDS:
                w = math.log(train_flops / a.train_flops) / math.log(b.train_flops / a.train_flops)
            else:
                w = (train_flops - a.train_flops) / (b.train_flops - a.train_flops)
            out[f] = va + w * (vb - va)
        for f in ("tifa_se", "alignment_se"):  # a standard error stays positive when extrapolated
            if out[f] is not None:
                out[f] = max(out[f], 0.0)
        return out

    def check_covers(self, members: list[UNetSpec], plan: P.Plan) -> None:
        """Every member is in the table and every rung it would train lies within the table's reach."""
        missing = [m for m in members if design_key(m) not in self.by_key]
        if missing:
            raise UserError(
                f"lacks {len(missing)} of the space's {len(members)} members (first: "
                f"{missing[0].model_dump(mode='json', exclude={'name'})}); replay the space the table "
                f"was made for ({self.table.meta.get('space')})",
                field="--replay",
                value=str(self.path),
            )
        unrun = [self.by_key[design_key(m)].id for m in members if self.by_key[design_key(m)].id not in self.runs]
        if unrun:
            raise UserError(
                f"has no run yet for {len(unrun)} of the space's {len(members)} members (first: "
                f"{unrun[0]}); finish the table first",
                field="--replay",
                value=str(self.path),
            )
        for m in members:
            per_sample = cost(m).train_flops_per_sample
            lo, hi = self.span(m)
            for k in range(len(plan.rungs)):
                f = plan.steps_at(k, per_sample) * plan.batch_size * per_sample
                if not lo / EXTRAPOLATE <= f <= hi * EXTRAPOLATE:
                    raise UserError(
                        f"covers {lo:.3g}..{hi:.3g} training FLOPs of design {self.design(m).id}, but "
                        f"rung {k} of this recipe's plan trains it to {f:.3g}; make the table with the "
                        f"search's recipe",
                        field="--replay",
                        value=str(self.path),
                    )


class ReplayExecutor:
    """Answers rungs from a ``GroundTruth`` and charges what the real run would cost (see the module docstring)."""

    def __init__(self, table: GroundTruth, recipe: Recipe, settings: SearchSettings, seed: int = 0) -> None:
        self.table, self.recipe, self.settings, self.seed = table, recipe, settings, seed
        self.wall = {"train": 0.0, "eval": 0.0}  # real seconds (a replay spends next to none)
        self._prompts_encoded = False  # TIFA prompts are encoded once per worker, as WorldTifa does

    def start_steps(self, job: RungJob) -> int:
        return job.prev_steps

    def eval_flops(self, job: RungJob) -> float:
        flops = P.val_flops(job.spec, self.recipe)
        if job.tifa:
            flops += P.tifa_flops(job.spec, self.recipe, self.settings)
            if not self._prompts_encoded:
                flops += P.caption_flops(job.spec.text_len) * (self.settings.tifa_prompts + 1)
        return flops

    def run(
        self,
        job: RungJob,
        meter: Meter,
        should_stop: Callable[[], bool],
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> RungResult:
        t0 = time.perf_counter()
        record = base_record(job, job.target_steps, self.recipe.batch_size)
        values = self.table.at(job.spec, record["train_flops"], self.seed)
        meter.train_flops = (
            (job.target_steps - job.prev_steps) * self.recipe.batch_size * cost(job.spec).train_flops_per_sample
        )
        meter.eval_flops = self.eval_flops(job)
        self._prompts_encoded = self._prompts_encoded or job.tifa
        record.update(
            val_loss=values["val_loss"], wall_s=values["wall_s"], eval_s=values["eval_s"], eval_flops=meter.eval_flops
        )
        if job.tifa:
            record.update({f: values[f] for f in ("tifa", "tifa_se", "alignment", "alignment_se")})
        self.wall["train"] += time.perf_counter() - t0
        return RungResult("done", record)


def replay_search(
    table: GroundTruth | str | Path,
    budget: float,
    *,
    sampler: str = "tpe",
    seed: int = 0,
    objectives: tuple[str, ...] = ("alignment", "gmacs"),
    space: str | Path | None = None,
    recipe: str | Path | None = None,
    storage: Any = None,
    study: str = "replay",
    cycle: tuple[int, ...] | None = None,
    on_done: Callable[[Any, Any, Any], None] | None = None,
    max_gmacs: float | None = None,
    max_params: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one seeded search on the replayed table in this process and return its summary (``runner.summary``).

    ``storage``: None (in memory: an Optuna ``InMemoryStorage``, the ledger in a private in-memory SQLite database),
    an Optuna storage object (the ledger still in memory) or a URL (study and ledger there, e.g. a temporary SQLite
    file to inspect later). ``cycle``: the bracket types (see ``plan.make_plan``; baselines). ``on_done(search,
    job, outcome)`` is called after every run (anytime curves: ``search.ledger.summary()["spent"]``,
    ``outcome.record``). ``max_gmacs``/``max_params``: constraints, as ``--max-gmacs``; ``stop``: asked between
    jobs (Ctrl-C). No subprocess, no DeepSpeed; the table is read once if given as a ``GroundTruth``.
    """
    import optuna

    from unetnas.search.runner import drive, summary
    from unetnas.search.session import SearchConfig, open_search, prepare
    from unetnas.search.storage import memory_engine

    gt = table if isinstance(table, GroundTruth) else GroundTruth.load(table)
    url = storage if isinstance(storage, str) else None
    cfg = SearchConfig(
        budget=budget,
        space=Path(space) if space else None,
        recipe=Path(recipe) if recipe else None,
        study=study,
        objectives=tuple(objectives),
        sampler=sampler,
        seed=seed,
        replay=gt.path,
        storage=url,
        cycle=cycle,
        max_gmacs=max_gmacs,
        max_params=max_params,
    )
    p = prepare(cfg, table=gt)
    if url is not None:
        search, url = open_search(p)
    else:
        search, url = open_search(p, storage=storage or optuna.storages.InMemoryStorage(), engine=memory_engine())
    t0 = time.perf_counter()
    reason = drive(
        search, stop or (lambda: False), on_done=None if on_done is None else lambda job, out: on_done(search, job, out)
    )
    return summary(search, reason, time.perf_counter() - t0, url)
