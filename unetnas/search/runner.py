"""`unetnas search`: a FLOPs-budgeted, multi-fidelity, multi-objective search driven through Optuna's ask/tell.

Loop: pick the next job (resume an interrupted rung; else promote the best waiting candidate of a rung, ASHA-style,
by non-dominated sorting; else start a new candidate at rung 0), reserve its FLOPs in the ledger, run it, settle
what it actually spent. The ledger refuses work that does not fit, so the total never exceeds the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.search import study as S
from unetnas.search.ledger import Ledger
from unetnas.search.plan import Plan
from unetnas.search.promotion import rank
from unetnas.space import SearchSpace
from unetnas.train.recipe import Recipe

log = logging.getLogger("unetnas.search")


@dataclass
class Job:
    trial_id: int
    number: int
    rung: int
    kind: str  # "new" | "promote" | "resume"


@dataclass
class Outcome:
    status: str  # "done" | "budget" | "stopped" | "failed"
    record: dict[str, Any] = field(default_factory=dict)


class Search:
    """One worker of a search over ``space`` under ``plan`` in ``study``; FLOPs accounted in ``ledger``."""

    def __init__(self, *, study, ledger: Ledger, space: SearchSpace, recipe: Recipe, plan: Plan, data: str,
                 objectives: tuple[str, ...], runs_dir: Path, seed: int = 0) -> None:  # fmt: skip
        self.study, self.ledger, self.space, self.recipe, self.plan = study, ledger, space, recipe, plan
        self.data, self.objectives, self.runs_dir, self.seed = data, objectives, runs_dir, seed
        self._source = None
        self._tifa = None
        self.wall = {"train": 0.0, "eval": 0.0}  # seconds inside training and scoring (the rest is orchestration)

    # -- data and proxies, built once per worker ------------------------------------------------------------
    @property
    def source(self):
        if self._source is None:
            from unetnas.train.source import open_source

            base = self.space.base
            spec0 = self.space.sample(1, seed=0)[0]
            self._source = open_source(self.data, seed=self.seed, pool=self.recipe.world_pool,
                                       resolution=spec0.resolution, text_len=base.get("text_len", spec0.text_len))  # fmt: skip
        return self._source

    @property
    def tifa(self):
        if self._tifa is None:
            from unetnas.proxies import WorldTifa

            s = self.recipe.search
            self._tifa = WorldTifa(prompts=s.tifa_prompts, images_per_prompt=s.tifa_images)
        return self._tifa

    # -- choosing work --------------------------------------------------------------------------------------
    def next_job(self) -> Job | None:
        running = S.trials_by_state(self.study)["running"]
        for t in running:  # an interrupted rung first (this worker or a dead one left it)
            if t.user_attrs.get("status") in ("new", "training", "paused"):
                return Job(t._trial_id, t.number, t.user_attrs.get("target_rung", 0), "resume")
        promo = self._promotion(running)
        if promo is not None:
            return promo
        started = sum(1 for t in self.study.get_trials(deepcopy=False) if "spec" in t.user_attrs)
        if started < self.plan.trials[0]:
            return self._new_trial()
        return None

    def _records(self, k: int) -> list[tuple[Any, dict]]:
        """(trial, rung-k record) of every trial that finished rung k."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            rec = t.user_attrs.get(f"rung_{k}")
            if rec is not None:
                out.append((t, rec))
        return out

    def _promotion(self, running) -> Job | None:
        waiting = {t.number for t in running if t.user_attrs.get("status") == "waiting"}
        for k in reversed(range(len(self.plan.rungs) - 1)):
            done = self._records(k)
            quota = min(len(done) // self.plan.eta, self.plan.trials[k + 1])
            promoted = sum(1 for t, _ in done if t.user_attrs.get("target_rung", -1) > k)
            if promoted >= quota:
                continue
            points = [S.to_minimise(S.objective_values(r, self.objectives), self.objectives) for _, r in done]
            for i in rank(points)[:quota]:
                t = done[i][0]
                if t.number in waiting and t.user_attrs.get("rung") == k:
                    return Job(t._trial_id, t.number, k + 1, "promote")
        return None

    def _new_trial(self, max_draws: int = 1000) -> Job:
        """Ask for a candidate; designs that break the constraints are told FAIL at once, with no compute."""
        for _ in range(max_draws):
            trial = self.study.ask()
            name = trial.user_attrs.get("preset") or f"{self.study.study_name}-t{trial.number}"
            spec = self.space.suggest(trial).with_(name=name)
            why = self.space.feasible(spec)
            if why is None:
                break
            trial.set_user_attr("infeasible", why)
            self.study.tell(trial, state=S.TrialState.FAIL)
        else:
            raise UserError(f"the sampler drew {max_draws} designs in a row that break the constraints",
                            field="--max-gmacs/--max-params")  # fmt: skip
        c = cost(spec)
        S.set_attrs(self.study, trial._trial_id, spec=spec.model_dump(mode="json"), gmacs=c.gmacs, params=c.params,
                    gflops=c.gflops, train_flops_per_sample=c.train_flops_per_sample, flops_spent=0.0,
                    dir=str(self.runs_dir / "trials" / f"{trial.number:04d}"), rung=-1, status="new")  # fmt: skip
        return Job(trial._trial_id, trial.number, 0, "new")

    # -- deciding -------------------------------------------------------------------------------------------
    def prune_decided(self) -> list[int]:
        """Stop waiting trials whose rung is complete and whose promotions are all made."""
        stopped = []
        for t in S.trials_by_state(self.study)["running"]:
            k = t.user_attrs.get("rung", -1)
            if t.user_attrs.get("status") != "waiting" or k >= len(self.plan.rungs) - 1:
                continue
            finished = len(self._records(k)) >= self.plan.trials[k]
            promoted = sum(1 for u, _ in self._records(k) if u.user_attrs.get("target_rung", -1) > k)
            if finished and promoted >= self.plan.trials[k + 1]:
                self._stop(t)
                stopped.append(t.number)
        return stopped

    def finish(self) -> list[int]:
        """Search over: every candidate still waiting stops where it is (not promoted in time or budget)."""
        waiting = [t for t in S.trials_by_state(self.study)["running"] if t.user_attrs.get("status") == "waiting"]
        for t in waiting:
            self._stop(t)
        return [t.number for t in waiting]

    def _stop(self, t) -> None:
        """A stopped candidate keeps its objective values if its last rung measured alignment (TIFA): it stays in
        the Pareto set, with its alignment under-estimated for its shorter training. Otherwise it is PRUNED."""
        rec = t.user_attrs[f"rung_{t.user_attrs['rung']}"]
        if rec.get("tifa") is not None:
            S.set_attrs(self.study, t._trial_id, status="stopped")
            self.study.tell(t.number, S.objective_values(rec, self.objectives))
        else:
            S.set_attrs(self.study, t._trial_id, status="pruned")
            self.study.tell(t.number, state=S.TrialState.PRUNED)

    # -- running one rung -----------------------------------------------------------------------------------
    def run(self, job: Job, should_stop: Callable[[], bool], on_step: Callable | None = None) -> Outcome:
        from unetnas.proxies import Subject, ValLoss
        from unetnas.train.trainer import Trainer

        t = self.study._storage.get_trial(job.trial_id)
        spec = S.spec_of(t)
        c = cost(spec)
        per_step = c.train_flops_per_sample * self.recipe.batch_size
        target = max(self.plan.steps_at(job.rung, c.train_flops_per_sample), 1)
        if job.rung > 0:
            target = max(target, t.user_attrs[f"rung_{job.rung - 1}"]["steps"] + 1)
        out = Path(t.user_attrs["dir"])
        done_steps = _checkpoint_steps(out)
        if done_steps and t.user_attrs.get("status") == "new":  # never trained (status "training" comes first)
            raise UserError("holds a checkpoint this trial never wrote (an earlier search's, under the same study "
                            "name?); remove the folder or use another --study", source=out / "checkpoint")  # fmt: skip
        use_tifa = job.rung in self.plan.tifa_rungs and self.data == "shapes"
        subject_stub = Subject(spec, None, self.recipe)
        eval_need = ValLoss().flops(subject_stub) + (self.tifa.flops(subject_stub) if use_tifa else 0.0)
        train_res = self.ledger.reserve(job.number, "train", (target - done_steps) * per_step, note=f"rung {job.rung}")
        if train_res is None:
            return Outcome("budget")
        eval_res = self.ledger.reserve(job.number, "eval", eval_need, note=f"rung {job.rung}")
        if eval_res is None:
            self.ledger.release(train_res)
            return Outcome("budget")
        S.set_attrs(self.study, job.trial_id, status="training", target_rung=job.rung)
        trainer, before, eval_spent = None, 0.0, 0.0
        try:
            t0 = time.perf_counter()
            trainer = Trainer(spec, self.recipe, self.source, out, seed=self.seed * 100_003 + job.number)
            if done_steps:
                trainer.resume()
            before = trainer.train_flops
            trainer.train_to(target, on_step=on_step, should_stop=should_stop)
            self.wall["train"] += time.perf_counter() - t0
            if trainer.step < target:  # Ctrl-C: keep the partial rung, charge what ran, free the rest
                trainer.save()
                self.ledger.settle(train_res, trainer.train_flops - before)
                self.ledger.release(eval_res)
                self._add_spent(job.trial_id, trainer.train_flops - before)
                S.set_attrs(self.study, job.trial_id, status="paused")
                return Outcome("stopped")
            t1 = time.perf_counter()
            subject = Subject.from_trainer(trainer)
            val = ValLoss().score(subject)
            eval_spent += val.flops
            record = {"rung": job.rung, "steps": trainer.step, "samples": trainer.samples,
                      "train_flops": trainer.train_flops, "val_loss": val.value, "gmacs": c.gmacs, "params": c.params,
                      "tifa": None, "wall_s": trainer.wall_s}  # fmt: skip
            if use_tifa:
                res = self.tifa.score(subject)
                eval_spent += res.flops
                record.update(tifa=res.value, by_category=res.details["by_category"], tifa_per_prompt=res.details["per_prompt"])
            self.wall["eval"] += time.perf_counter() - t1
            trainer.save()
        except BaseException as err:
            spent = (trainer.train_flops - before) if trainer is not None else 0.0
            self.ledger.settle(train_res, min(spent, train_res.flops))
            self.ledger.settle(eval_res, min(eval_spent, eval_res.flops))
            self._add_spent(job.trial_id, spent + eval_spent)
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                S.set_attrs(self.study, job.trial_id, status="paused")
                raise
            S.set_attrs(self.study, job.trial_id, status="failed", error=f"{type(err).__name__}: {err}"[:500])
            self.study.tell(job.number, state=S.TrialState.FAIL)
            log.warning("trial %d failed at rung %d: %s", job.number, job.rung, err)
            if isinstance(err, UserError):
                raise
            return Outcome("failed")
        self.ledger.settle(train_res, trainer.train_flops - before)
        self.ledger.settle(eval_res, eval_spent)
        self._add_spent(job.trial_id, trainer.train_flops - before + eval_spent)
        self.study._storage.set_trial_intermediate_value(job.trial_id, trainer.samples, val.value)
        last = job.rung == len(self.plan.rungs) - 1
        S.set_attrs(self.study, job.trial_id, **{f"rung_{job.rung}": record}, rung=job.rung,
                    status="complete" if last else "waiting")  # fmt: skip
        if last:
            self.study.tell(job.number, S.objective_values(record, self.objectives))
        return Outcome("done", record)

    def _add_spent(self, trial_id: int, flops: float) -> None:
        t = self.study._storage.get_trial(trial_id)
        S.set_attrs(self.study, trial_id, flops_spent=t.user_attrs.get("flops_spent", 0.0) + flops)


def _checkpoint_steps(out: Path) -> int:
    from unetnas.train import checkpoint

    if not (out / "checkpoint" / checkpoint.STATE).is_file():
        return 0
    return int(checkpoint.read_state(out / "checkpoint")["step"])
