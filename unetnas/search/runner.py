"""One worker of `unetnas search`: asks the scheduler what to do, pays for it in the ledger, has an executor do it,
records the result in the study and feeds it to the sampler's model of that rung.

Every run is reserved before it starts (training: the steps still to do x FLOPs per step; evaluation: the
executor's upper bound) and settled with what the executor's meter says was spent, whatever happens (done,
Ctrl-C, an error), so the ledger never overspends and no FLOP is lost. A run the ledger refuses closes its
candidate with the reason (Optuna state PRUNED, status ``closed``): no trial is left RUNNING by a finished search.
Only Ctrl-C leaves a rung ``paused``, and the same command resumes it.

Any number of workers (processes, machines) may drive one study: deciding the next job and claiming it happen under
the study's ``scheduler`` lease, and the rung runs under a ``trial:<n>`` lease (``lease.py``) that a heartbeat thread
renews with the meter's FLOPs. A worker never runs a rung another live worker holds. When a holder dies, the next
worker to look settles its reservations at what ran (training: the meter's last renewal or the checkpoint's step,
whichever is more; evaluation: what the meter showed, usually nothing) and the rung resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.search import study as S
from unetnas.search.accountant import Accountant
from unetnas.search.budget import format_flops
from unetnas.search.executor import Executor, Meter, RungJob
from unetnas.search.lease import SCHEDULER, Heartbeat, Leases, Stopped
from unetnas.search.ledger import Ledger, Reservation
from unetnas.search.plan import Bracket, Plan
from unetnas.search.proposer import Proposer
from unetnas.search.scheduler import Candidate, Job, Scheduler
from unetnas.search.trials import TrialStore, trial_id
from unetnas.space import SearchSpace

log = logging.getLogger("unetnas.search")
BRACKETS_ATTR = "brackets"  # study user attr: the bracket sizes in force (the plan's, adjusted to the budget)
EXHAUSTED_ATTR = "space_exhausted"  # study user attr: the proposer found no feasible member the study lacks
STOPPED = "stopped (Ctrl-C): rerun the same command to resume"


@dataclass
class Outcome:
    status: str  # "done" | "budget" (closed: did not fit) | "stopped" (Ctrl-C) | "failed" | "lost" (lease taken over)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Running:
    """A rung claimed and paid for (``Search.begin``), not yet run (``Search.execute``)."""

    job: Job
    rung_job: RungJob
    train: Reservation
    eval: Reservation
    key: str


class Search:
    """One worker of a search over ``space`` under ``plan`` in ``study``; FLOPs accounted in ``ledger``."""

    def __init__(
        self,
        *,
        study: optuna.Study,
        ledger: Ledger,
        space: SearchSpace,
        plan: Plan,
        objectives: tuple[str, ...],
        executor: Executor,
        proposer: Proposer,
        runs_dir: Path | None,
        seed: int = 0,
        leases: Leases | None = None,
    ) -> None:
        self.study, self.ledger, self.space, self.plan = study, ledger, space, plan
        self.store = TrialStore(study)
        self.leases = leases if leases is not None else Leases(ledger.engine, study.study_name)
        self.accountant = Accountant(ledger, self.leases, self.store, plan.once_flops)
        self.objectives, self.executor, self.proposer = objectives, executor, proposer
        self.runs_dir, self.seed = runs_dir, seed
        self.scheduler = Scheduler(plan.costs, plan.eta, tuple(plan.cycle))
        self.top = len(plan.rungs) - 1

    @property
    def wall(self) -> dict[str, float]:
        return self.executor.wall

    # -- state ----------------------------------------------------------------------------------------------------
    def brackets(self) -> list[Bracket]:
        stored = self.study.user_attrs.get(BRACKETS_ATTR)
        if stored is None:
            return list(self.plan.brackets)
        return [Bracket(int(b["start"]), tuple(int(n) for n in b["counts"])) for b in stored]

    def _save_brackets(self, brackets: list[Bracket]) -> None:
        self.study.set_user_attr(BRACKETS_ATTR, [{"start": b.start, "counts": list(b.counts)} for b in brackets])

    def candidates(self) -> list[Candidate]:
        out = []
        for t in self.study.get_trials(deepcopy=False):
            a = t.user_attrs
            if not {"bracket", "rung", "target_rung", "status"} <= a.keys():  # not a candidate, or being written
                continue
            points = {}
            for k in range(a["rung"] + 1):
                rec = a.get(f"rung_{k}")
                if rec is not None:
                    points[k] = (
                        tuple(S.to_minimise(S.objective_values(rec, self.objectives), self.objectives)),
                        tuple(S.objective_se(rec, self.objectives)),
                    )
            out.append(
                Candidate(
                    t.number,
                    trial_id(t),
                    a["bracket"],
                    a["rung"],
                    a["target_rung"],
                    a["status"],
                    points,
                    a.get("design", ""),
                    a.get("continues"),
                )
            )
        return out

    def _taken(self) -> set[str]:
        return {t.user_attrs["design"] for t in self.study.get_trials(deepcopy=False) if "design" in t.user_attrs}

    def feasible_left(self) -> int:
        """Feasible members the study has not taken yet: how many new candidates more brackets may start (0 once
        the proposer found none: the count of a large space is an estimate)."""
        if self.study.user_attrs.get(EXHAUSTED_ATTR):
            return 0
        members = self.plan.members if self.plan.members is not None else self.space.size()
        return max(0, members - len(self._taken()))

    def charge_once(self) -> None:
        self.accountant.charge_once()

    # -- choosing work ----------------------------------------------------------------------------------------------
    def next_job(self, busy: set[int] | frozenset[int] = frozenset()) -> Job | None:
        """The next job (``Scheduler.decide``); ``busy``: trials whose rung another worker runs (never resumed,
        counted as under way). A new job gets its trial here; when the space has no feasible member left to
        propose, the open slots close and the scheduler decides again."""
        while True:
            brackets = self.brackets()
            cands = [replace(c, status="running") if c.number in busy else c for c in self.candidates()]
            d = self.scheduler.decide(brackets, cands, self.ledger.summary()["remaining"], self.feasible_left())
            if d.brackets != brackets:
                self._save_brackets(d.brackets)
            job = d.job
            if job is not None and job.kind == "continue":
                trial = self._continuation(job)
                return Job("promote", job.bracket, job.rung, trial.number, trial_id(trial))
            if job is None or job.kind != "new":
                return job
            trial = self._new_trial(job.bracket)
            if trial is not None:
                return replace(job, number=trial.number, trial_id=trial_id(trial))
            self.study.set_user_attr(EXHAUSTED_ATTR, True)  # no untried feasible member: no new candidate from now
            self._save_brackets(self.scheduler.close_open_slots(d.brackets, cands))

    def _new_trial(self, bracket: int) -> optuna.trial.FrozenTrial | None:
        """Ask the study for the next candidate: an enqueued preset, else the proposer's draw (never a design the
        study already holds)."""
        info: dict[str, Any] = {}
        if not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            proposal = self.proposer.propose(self._taken())
            if proposal is None:
                return None
            self.study.enqueue_trial(proposal.params, skip_if_exists=False)
            info = proposal.info
        trial = self.study.ask()
        name = trial.user_attrs.get("preset") or f"{self.study.study_name}-t{trial.number}"
        spec = self.space.suggest(trial).with_(name=name)
        c = cost(spec)
        attrs = dict(
            spec=spec.model_dump(mode="json"),
            design=S.design_key(spec),
            gmacs=c.gmacs,
            params=c.params,
            gflops=c.gflops,
            train_flops_per_sample=c.train_flops_per_sample,
            flops_spent=0.0,
            bracket=bracket,
            rung=-1,
            target_rung=self.brackets()[bracket].start,
            top_rung=False,
            status="new",
            proposal=info,
        )
        if self.runs_dir is not None:
            attrs["dir"] = str(self.runs_dir / "trials" / f"{trial.number:04d}")
        S.set_attrs(self.study, trial_id(trial), **attrs)
        return self.store.get(trial_id(trial))

    def _continuation(self, job: Job) -> optuna.trial.FrozenTrial:
        """A second chance (``Scheduler.second_chance``) for pruned trial ``job.number``: a new trial of the same
        design in bracket ``BRACKET_SECOND``, waiting at the rung the pruned one finished, with its records and
        learning curve and a copy of its trial folder (the checkpoint it continues from); ``continues`` names it
        (and gives its seed: a continuation is promoted in place, never pruned, so it is never continued itself)."""
        origin = self.store.get(job.trial_id)
        a = origin.user_attrs
        self.study.enqueue_trial(origin.params, skip_if_exists=False)
        trial = self.study.ask()
        self.space.suggest(trial)  # the enqueued values become the trial's params (the dashboard's columns)
        keep = ("spec", "design", "gmacs", "params", "gflops", "train_flops_per_sample", "preset")
        attrs: dict[str, Any] = {"continues": origin.number}
        attrs.update({k: a[k] for k in keep if k in a})
        attrs.update({f"rung_{k}": a[f"rung_{k}"] for k in range(job.rung) if f"rung_{k}" in a})
        attrs.update(
            flops_spent=0.0,
            bracket=job.bracket,
            rung=job.rung - 1,
            target_rung=job.rung - 1,
            top_rung=False,
            status="waiting",
            proposal={},
        )
        for step, value in origin.intermediate_values.items():
            self.store.set_intermediate(trial_id(trial), step, value)
        if a.get("dir"):
            folder = Path(a["dir"]).parent / f"{trial.number:04d}"
            if Path(a["dir"]).is_dir():
                shutil.copytree(a["dir"], folder, dirs_exist_ok=True)
            attrs["dir"] = str(folder)
        S.set_attrs(self.study, trial_id(trial), **attrs)
        log.info("trial %d continues pruned trial %d at rung %d (second chance)", trial.number, origin.number, job.rung)
        return self.store.get(trial_id(trial))

    def over(self) -> bool:
        """Whether the search is over already (every candidate finished, no rung held, nothing left to start), read
        without writing anything: resuming a finished search changes nothing in its database."""
        trials = self.study.get_trials(deepcopy=False)
        if not trials or any(not t.state.is_finished() for t in trials if "bracket" in t.user_attrs):
            return False
        if self.leases.all():
            return False
        return self.scheduler.over(
            self.brackets(), self.candidates(), self.ledger.summary()["remaining"], self.feasible_left()
        )

    # -- deciding -----------------------------------------------------------------------------------------------------
    def prune_decided(self, busy: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Stop waiting candidates whose rung is decided without them (not ``busy`` ones: a worker still records)."""
        done = []
        for c, reason in self.scheduler.decided(self.brackets(), self.candidates()):
            if c.number in busy:
                continue
            self._close(c.number, c.trial_id, "pruned", reason)
            done.append(c.number)
        return done

    def finish(self, reason: str = "the search ended before its rung was decided") -> list[int]:
        """Search over: every candidate still waiting (or never begun) stops where it is, with ``reason``."""
        left = [c for c in self.candidates() if c.status in ("waiting", "new")]
        for c in left:
            self._close(c.number, c.trial_id, "closed", reason)
        return [c.number for c in left]

    def _close(self, number: int, trial_id: int, status: str, reason: str) -> None:
        S.set_attrs(self.study, trial_id, status=status, reason=reason)
        self.study.tell(number, state=optuna.trial.TrialState.PRUNED)

    # -- running one rung ---------------------------------------------------------------------------------------------
    def rung_job(self, job: Job) -> RungJob:
        t = self.store.get(job.trial_id)
        spec = S.spec_of(t)
        per_sample = cost(spec).train_flops_per_sample
        prev = t.user_attrs[f"rung_{job.rung - 1}"]["steps"] if f"rung_{job.rung - 1}" in t.user_attrs else 0
        target = max(self.plan.steps_at(job.rung, per_sample), prev + 1, 1)
        folder = Path(t.user_attrs["dir"]) if t.user_attrs.get("dir") else None
        return RungJob(
            t.number,
            spec,
            job.rung,
            target,
            prev,
            job.rung in self.plan.tifa_rungs,
            seed=self.seed * 100_003 + t.user_attrs.get("continues", t.number),  # a continuation: its origin's
            folder=folder,
            fresh=t.user_attrs["status"] == "new",
        )

    def run(self, job: Job, should_stop: Callable[[], bool], on_step: Callable | None = None) -> Outcome:
        started = self.begin(job)
        return started if isinstance(started, Outcome) else self.execute(started, should_stop, on_step)

    def begin(self, job: Job) -> Running | Outcome:
        """Claim the rung's lease and reserve its training and evaluation (call under the ``scheduler`` lease)."""
        rj = self.rung_job(job)
        per_step = cost(rj.spec).train_flops_per_sample * self.plan.batch_size
        key = self.accountant.claim(job.number, job.trial_id, job.rung)
        if key is None:
            return Outcome("busy")
        start: list[int] = []

        def train_flops() -> float:
            start.append(self.executor.start_steps(rj))
            return max(rj.target_steps - start[0], 0) * per_step

        reserved = self.accountant.reserve(key, job.number, job.rung, train_flops, lambda: self.executor.eval_flops(rj))
        if reserved is None:
            left = self.accountant.remaining()
            self._close(
                job.number,
                job.trial_id,
                "closed",
                f"budget: rung {job.rung} no longer fits ({format_flops(left)} FLOPs left)",
            )
            self.accountant.give_back(key)
            return Outcome("budget")
        train_res, eval_res = reserved
        folder = None if rj.folder is None else str(rj.folder)
        self.accountant.hold(key, train_res, eval_res, start_steps=start[0], per_step=per_step, folder=folder)
        S.set_attrs(self.study, job.trial_id, status="training", target_rung=job.rung)
        return Running(job, rj, train_res, eval_res, key)

    def abandon(self, r: Running) -> None:
        """Give a claimed rung back before it ran: release both reservations and the lease; the trial keeps its
        status (a new candidate stays ``new``, a promotion stays ``waiting`` at its rung) and is claimed again."""
        if r.job.kind == "promote":
            S.set_attrs(self.study, r.job.trial_id, status="waiting", target_rung=r.job.rung - 1)
        else:
            S.set_attrs(self.study, r.job.trial_id, status="new" if r.rung_job.fresh else "paused")
        self.accountant.give_back(r.key, r.train, r.eval)

    def execute(self, r: Running, should_stop: Callable[[], bool], on_step: Callable | None = None) -> Outcome:
        """Run a claimed rung under a heartbeat; settle what ran; record the result; give the lease back."""
        job, rj, train_res, eval_res = r.job, r.rung_job, r.train, r.eval
        meter = Meter()
        beat = Heartbeat(self.leases, r.key, meter, self.ledger)
        beat.start()
        try:
            result = self.executor.run(rj, meter, lambda: should_stop() or beat.lost, on_step)
        except BaseException as err:
            beat.stop()
            if beat.lost and not isinstance(err, (KeyboardInterrupt, SystemExit)):
                return self._lost(job)
            self._settle(job, train_res, eval_res, meter)
            try:
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    S.set_attrs(self.study, job.trial_id, status="paused")
                    raise
                S.set_attrs(self.study, job.trial_id, status="failed", reason=f"{type(err).__name__}: {err}"[:500])
                self.study.tell(job.number, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed at rung %d: %s", job.number, job.rung, err)
                if isinstance(err, UserError):
                    raise
                return Outcome("failed")
            finally:
                self.leases.release(r.key)
        beat.stop()
        if beat.lost:
            return self._lost(job)
        self._settle(job, train_res, eval_res, meter)
        try:
            if result.status == "stopped":
                S.set_attrs(self.study, job.trial_id, status="paused")
                return Outcome("stopped")
            return Outcome("done", self._record(job, result.record))
        finally:
            self.leases.release(r.key)

    def _lost(self, job: Job) -> Outcome:
        log.warning(
            "trial %d: lost the lease of rung %d (no heartbeat within its time-to-live); another worker "
            "settles and resumes it",
            job.number,
            job.rung,
        )
        return Outcome("lost")

    def recover_abandoned(self) -> list[int]:
        return self.accountant.recover_abandoned()

    def _settle(self, job: Job, train_res: Reservation, eval_res: Reservation, meter: Meter) -> None:
        self.accountant.settle(job.number, job.trial_id, train_res, eval_res, meter)

    def _record(self, job: Job, record: dict[str, Any]) -> dict[str, Any]:
        top = job.rung == self.top
        if record.get("val_loss") is not None and math.isfinite(record["val_loss"]):
            self.store.set_intermediate(job.trial_id, record["samples"], record["val_loss"])
        S.set_attrs(
            self.study,
            job.trial_id,
            **{f"rung_{job.rung}": record},
            rung=job.rung,
            top_rung=top,
            status="complete" if top else "waiting",
        )
        values = S.objective_values(record, self.objectives)
        self.proposer.feed(self.store.get(job.trial_id), job.rung, values)
        if top:
            self.study.tell(job.number, values)
        return record


def drive(
    search: Search,
    stop: Callable[[], bool],
    on_job: Callable[[Job], None] | None = None,
    on_done: Callable[[Job, Outcome], None] | None = None,
    poll_s: float | None = None,
) -> str:
    """Run the search loop until the plan is done or ``stop()``; returns the reason it ended.

    One worker of possibly many: each turn settles abandoned rungs, stops decided candidates and claims the next
    job under the ``scheduler`` lease; with nothing to claim while other workers still run rungs it waits
    (``poll_s``, default a tenth of the lease time-to-live, at most 2 s) for their results.
    """
    poll = poll_s if poll_s is not None else min(search.leases.ttl_s / 10, 2.0)
    while not search.over():
        if stop():
            return STOPPED
        try:
            with search.leases.held(SCHEDULER, stop=stop):
                search.recover_abandoned()
                busy = search.leases.busy_trials()
                search.prune_decided(busy)
                job = search.next_job(busy)
                started = None if job is None else search.begin(job)
                if job is None and not busy:
                    search.finish()
                    break
        except Stopped:  # Ctrl-C while another worker decides
            return STOPPED
        if job is None or (isinstance(started, Outcome) and started.status == "busy"):
            _sleep(poll, stop)
            continue
        if isinstance(started, Running):
            if stop():  # asked to stop while claiming: give the claim back unspent
                search.abandon(started)
                return STOPPED
            try:
                if on_job is not None:
                    on_job(job)
            except BaseException:
                search.abandon(started)
                raise
        out = started if isinstance(started, Outcome) else search.execute(started, should_stop=stop)
        if on_done is not None:
            on_done(job, out)
        if out.status == "stopped":
            return STOPPED
    closed = sum(
        1
        for t in search.study.get_trials(deepcopy=False)
        if t.user_attrs.get("status") == "closed" and "budget" in (t.user_attrs.get("reason") or "")
    )
    return "plan finished" + (f" ({closed} candidate(s) closed: budget)" if closed else "")


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    """Wait ``seconds`` for other workers, asking ``stop()`` every tenth of a second."""
    end = time.monotonic() + seconds
    while not stop() and time.monotonic() < end:
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))
