"""The ground-truth table a replay answers from: its data model (``Table``) and the loaded, indexed table
(``GroundTruth``).

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
Imports point one way: ``groundtruth`` <- ``replay_executor`` <- ``session`` <- ``replay`` (the entry point).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unetnas.artifacts import Scores
from unetnas.cost import cost
from unetnas.errors import UserError, from_validation_error
from unetnas.search import plan as P
from unetnas.search.executor import standard_error
from unetnas.search.study import design_key
from unetnas.spec import UNetSpec

ROOT = Path(__file__).resolve().parents[2]
EXTRAPOLATE = 2.0  # values are extrapolated at most this factor of training FLOPs beyond the table's checkpoints
LOG_FIELDS = ("val_loss", "tifa", "tifa_se", "alignment", "alignment_se")  # interpolated in log(FLOPs)
LINEAR_FIELDS = ("wall_s", "eval_s")  # proportional to FLOPs: interpolated linearly


class TableCheckpoint(Scores):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    train_flops: float = Field(..., gt=0)
    steps: int = Field(..., ge=0)
    samples: int | None = None
    wall_s: float | None = None
    eval_flops: float | None = None
    eval_s: float | None = None
    val_loss: float  # every checkpoint was validated
    prompts: int | None = None  # prompts its alignment was scored on (None: not said)
    per_prompt_alignment: list[float] | None = None  # the corrected alignment of each prompt, in prompt-set order


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

    def at(self, spec: UNetSpec, train_flops: float, seed: int, prompts: int | None = None) -> dict[str, float | None]:
        """The design's values after ``train_flops`` training FLOPs, in the run ``seed`` reads (``prompts``: see
        ``run_at``)."""
        return self.run_at(self.run_for(spec, seed), train_flops, self.design(spec).id, prompts)

    def run_at(
        self, run: TableRun, train_flops: float, design_id: str = "", prompts: int | None = None
    ) -> dict[str, float | None]:
        """One run's values after ``train_flops`` training FLOPs: interpolated between its checkpoints (in log
        FLOPs for ``LOG_FIELDS``, linearly for ``LINEAR_FIELDS``), extrapolated at most ``EXTRAPOLATE`` x beyond.

        ``prompts``: the alignment a scoring on the first ``prompts`` of the table's prompts would read (a search
        whose recipe scores fewer prompts than the table did: ``WorldTifa`` takes a prefix of one prompt set), from
        the checkpoints' per-prompt alignments, each prompt keeping the text-blind baseline the table measured.
        None, or at least the table's count: the table's own values (``check_prompts`` says which counts a table
        can answer)."""
        cks = [self._prompt_subset(c, prompts) for c in run.checkpoints] if prompts else run.checkpoints
        lo, hi = cks[0].train_flops, cks[-1].train_flops
        if not lo / EXTRAPOLATE <= train_flops <= hi * EXTRAPOLATE:
            raise UserError(
                f"covers {lo:.3g}..{hi:.3g} training FLOPs of design {design_id}; {train_flops:.3g} is out of reach",
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

    @staticmethod
    def _prompt_subset(c: TableCheckpoint, prompts: int) -> TableCheckpoint:
        """Checkpoint ``c`` with its alignment read on its first ``prompts`` prompts (see ``run_at``; what it cannot
        answer, ``check_prompts`` refuses before a search starts)."""
        pp = c.per_prompt_alignment
        if c.alignment is None or pp is None or prompts >= len(pp):
            return c
        sub = pp[:prompts]
        return c.model_copy(update={"alignment": math.fsum(sub) / prompts, "alignment_se": standard_error(sub)})

    def check_prompts(self, prompts: int) -> None:
        """That every scored checkpoint can answer a scoring on ``prompts`` prompts (``run_at``): not more than the
        table scored, and fewer only where it kept per-prompt alignments (a table that does not say its count is
        read as it is: tables before the field). One-line ``UserError`` otherwise."""
        for r in self.table.runs:
            for c in r.checkpoints:
                if c.alignment is None:
                    continue
                have = len(c.per_prompt_alignment) if c.per_prompt_alignment is not None else c.prompts
                if have is not None and prompts > have:
                    raise UserError(
                        f"scored {have} prompts per checkpoint (design {r.design}); the recipe's "
                        f"tifa_prompts={prompts} asks more, which a replay cannot add",
                        field="--replay",
                        value=str(self.path),
                    )
                if c.per_prompt_alignment is None and have is not None and prompts < have:
                    raise UserError(
                        f"keeps no per-prompt alignments (design {r.design}), so it cannot answer the recipe's "
                        f"tifa_prompts={prompts}; replay it with the recipe it was made with",
                        field="--replay",
                        value=str(self.path),
                    )

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
