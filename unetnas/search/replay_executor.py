"""``ReplayExecutor``: answers a rung from a ground-truth table (``groundtruth.GroundTruth``) instead of training,
in milliseconds, and charges exactly what a real search would (training from the spec's cost, evaluation from the
plan's estimates), so the very same scheduler, sampler, ledger and study code run in both."""

from __future__ import annotations

import time

from unetnas.cost import cost
from unetnas.search import plan as P
from unetnas.search.executor import Meter, OnStep, RungJob, RungResult, ShouldStop, base_record
from unetnas.search.groundtruth import GroundTruth
from unetnas.train.recipe import Recipe, SearchSettings


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

    def run(self, job: RungJob, meter: Meter, should_stop: ShouldStop, on_step: OnStep | None = None) -> RungResult:
        t0 = time.perf_counter()
        record = base_record(job, job.target_steps, self.recipe.batch_size)
        # a scored rung reads the alignment of the recipe's prompt count (a prefix of the table's prompts)
        values = self.table.at(
            job.spec, record["train_flops"], self.seed, self.settings.tifa_prompts if job.tifa else None
        )
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
