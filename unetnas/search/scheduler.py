"""Decisions of the search (what runs next, who stops), as pure functions of the candidates' state.

Asynchronous successive halving in Hyperband's brackets (ASHA, Li et al. 2020; multi-objective as MO-ASHA,
Schmucker et al. 2021): whenever a worker is free it (1) resumes an interrupted rung, else (2) promotes a candidate,
looking from the highest rung down: in bracket j, a candidate waiting at rung k moves to k+1 when it is among the
first ``min(done_k // eta, quota_{k+1})`` of the rung's results by ``promotion.rank`` (noise-aware fronts, then
hypervolume contribution), else (3) starts a new candidate in the first bracket with a free slot. Promotions from a
rung whose every slot has a result come first (the exact successive-halving decision); ASHA's early promotion from a
rung still filling up is taken only when there is no new candidate to start, so no worker waits for a rung to fill
up, yet a single worker does not promote the best of the first three while a better fourth is still to come. A candidate stops ("pruned") once its rung is decided: every slot of the rung has a result
and every promotion from it is made (or the bracket ends there).

The bracket sizes are the plan's, adjusted to what is really left: before a new candidate starts, unstarted slots
are cancelled (latest bracket first) while the budget left cannot pay for the work still promised at the plan's
typical costs (``shrink``); when everything promised is done and budget is left, more brackets follow Hyperband's
cycle (``extend``). When no bracket can start (the space has no untried member, or what is left cannot pay for
one) and budget is left, a stopped candidate gets a **second chance** (``second_chance``): ASHA's promotion fraction
grows past 1/eta, one candidate at a time, the one ranked best *within its rung* (position / results at the rung,
over every bracket, by ``promotion.rank``; ties to the higher rung) continues to the next rung from its checkpoint.
A pruned candidate continues as a new trial (``BRACKET_SECOND``, ``continues`` = its number; Optuna's PRUNED is
final); a continued one that finished its rung waits at it for the next chance. This repairs the early rungs' ranking
mistakes with budget that would otherwise be left unspent. Nothing here touches Optuna, the ledger or an executor
(see ``runner.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from unetnas.search.plan import MARGIN, Bracket, Costs, halving, layout
from unetnas.search.promotion import rank

RESUMABLE = ("new", "training", "paused")  # sent to a rung that has not finished (interrupted, or never begun)
CLOSED = ("failed", "closed")  # stopped without finishing the rung they were sent to
BRACKET_SECOND = -1  # the bracket of second chances: continued candidates, outside the plan's brackets


@dataclass(frozen=True)
class Candidate:
    number: int  # trial number
    trial_id: int
    bracket: int
    rung: int  # last finished rung (-1: none)
    target: int  # the rung it was last sent to (its first rung while new)
    status: str  # new | training | paused | waiting | complete | pruned | closed | failed
    points: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = field(
        default_factory=dict
    )  # rung -> (to minimise, se)
    key: str = ""  # design key: the last tie-break of the ranking
    continues: int | None = None  # second chances: the pruned trial this one continues


@dataclass(frozen=True)
class Job:
    kind: str  # "new" | "promote" | "resume" | "continue" (a second chance for pruned trial ``number``)
    bracket: int
    rung: int
    number: int | None = None  # None for "new" until the runner asks the study for a trial
    trial_id: int | None = None


@dataclass(frozen=True)
class Decision:
    """What runs next (None: nothing now) and the bracket sizes in force after deciding it (store them if they
    changed)."""

    job: Job | None
    brackets: list[Bracket]


class Scheduler:
    """ASHA over ``brackets`` with the plan's typical ``costs``; more brackets follow ``cycle`` (bracket types)."""

    def __init__(self, costs: Costs, eta: int, cycle: tuple[int, ...] | None = None) -> None:
        self.costs, self.eta = costs, eta
        self.top = len(costs.rungs) - 1
        self.cycle = tuple(range(self.top + 1)) if cycle is None else tuple(cycle)

    # -- counting -------------------------------------------------------------------------------------------------
    @staticmethod
    def members(cands: list[Candidate], j: int) -> list[Candidate]:
        return [c for c in cands if c.bracket == j]

    @staticmethod
    def sent(cs: list[Candidate], rung: int) -> int:
        """Candidates sent to ``rung`` or beyond (started there, whatever became of them)."""
        return sum(1 for c in cs if c.target >= rung)

    # -- the decisions: pure functions of (brackets, candidates, budget left, feasible members left) -----------------
    def decide(self, brackets: list[Bracket], cands: list[Candidate], available: float, left: int) -> Decision:
        """The next job and the brackets in force: before a new candidate starts, unstarted slots that the budget
        left (``available`` FLOPs) cannot pay for are cancelled (``shrink``); with nothing to run, more brackets
        follow for what is left beyond the promised work, at most ``left`` new candidates (the feasible members
        the study has not taken: 0 ends the search once everything started is done)."""
        job = self.next_job(brackets, cands)
        if job is not None and job.kind == "new":
            fitted = self.shrink(brackets, cands, available)
            if fitted != brackets:
                brackets = fitted
                job = self.next_job(brackets, cands)
        if job is None:
            more = self.extend(brackets, cands, available, left)
            if more != brackets:
                brackets = more
                job = self.next_job(brackets, cands)
            else:
                job = self.second_chance(brackets, cands, available)
        return Decision(job, brackets)

    def over(self, brackets: list[Bracket], cands: list[Candidate], available: float, left: int) -> bool:
        """Whether nothing is left to run or decide, and no more brackets would start (nothing held by a worker is
        the caller's part to check)."""
        if self.next_job(brackets, cands) is not None or self.decided(brackets, cands):
            return False
        if self.extend(brackets, cands, available, left) != brackets:
            return False
        return self.second_chance(brackets, cands, available) is None

    # -- what runs next ---------------------------------------------------------------------------------------------
    def next_job(self, brackets: list[Bracket], cands: list[Candidate]) -> Job | None:
        for c in sorted(cands, key=lambda c: c.number):
            if c.status in RESUMABLE:
                return Job("resume", c.bracket, c.target, c.number, c.trial_id)
        job = self._promote(brackets, cands, eager=False)  # rungs with every result in: exact SHA decisions
        if job is not None:
            return job
        for j, b in enumerate(brackets):
            if len(self.members(cands, j)) < b.counts[0]:
                return Job("new", j, b.start)
        return self._promote(brackets, cands, eager=True)  # nothing else to run: ASHA's early promotion

    def _promote(self, brackets: list[Bracket], cands: list[Candidate], eager: bool) -> Job | None:
        for k in reversed(range(self.top)):
            for j, b in enumerate(brackets):
                job = self._promotion(j, b, k, self.members(cands, j), eager=eager)
                if job is not None:
                    return job
        return None

    def quota(self, b: Bracket, k: int, cs: list[Candidate]) -> tuple[list[Candidate], int]:
        """(candidates of the bracket with a rung-k result, how many of them may be promoted now)."""
        done = [c for c in cs if k in c.points]
        return done, min(len(done) // self.eta, b.count_at(k + 1))

    def _promotion(self, j: int, b: Bracket, k: int, cs: list[Candidate], eager: bool = True) -> Job | None:
        if not b.start <= k < b.last:
            return None
        done, quota = self.quota(b, k, cs)
        if not eager:  # only once the rung is resolved: the best of all its results, not of the first ones
            if sum(1 for x in cs if k in x.points or (x.target >= k and x.status in CLOSED)) < b.count_at(k):
                return None
            quota = min(b.count_at(k + 1), len(done))
        if self.sent(cs, k + 1) >= quota:
            return None
        order = rank(
            [done[i].points[k][0] for i in range(len(done))], [c.points[k][1] for c in done], keys=[c.key for c in done]
        )
        for i in order[:quota]:
            c = done[i]
            if c.status == "waiting" and c.rung == k and c.target == k:
                return Job("promote", j, k + 1, c.number, c.trial_id)
        return None

    # -- who stops ----------------------------------------------------------------------------------------------------
    def decided(self, brackets: list[Bracket], cands: list[Candidate]) -> list[tuple[Candidate, str]]:
        """Waiting candidates whose rung is decided without them, with the reason."""
        out = []
        for j, b in enumerate(brackets):
            cs = self.members(cands, j)
            for c in cs:
                if c.status != "waiting" or c.rung >= self.top:
                    continue
                k = c.rung
                if k >= b.last:
                    out.append((c, f"its bracket ends at rung {k}"))
                    continue
                resolved = sum(1 for x in cs if k in x.points or (x.target >= k and x.status in CLOSED))
                if resolved >= b.count_at(k) and self.sent(cs, k + 1) >= b.count_at(k + 1):
                    out.append((c, f"not among the best {b.count_at(k + 1)} of {b.count_at(k)} at rung {k}"))
        return out

    # -- what is promised, and adjusting it to the budget ------------------------------------------------------------
    def committed(self, brackets: list[Bracket], cands: list[Candidate]) -> float:
        """FLOPs still promised at typical costs: unstarted runs of every bracket and unfinished started ones."""
        total = []
        for j, b in enumerate(brackets):
            cs = self.members(cands, j)
            for k in range(b.start, b.last + 1):
                total.append(max(0, b.count_at(k) - self.sent(cs, k)) * self.costs.run(k, b.start))
            total += [self.costs.run(c.target, b.start) for c in cs if c.status in RESUMABLE]
        total += [self.costs.run(c.target, 0) for c in self.members(cands, BRACKET_SECOND) if c.status in RESUMABLE]
        return math.fsum(total)

    def shrink(self, brackets: list[Bracket], cands: list[Candidate], available: float) -> list[Bracket]:
        """Cancel unstarted slots, latest bracket first, until the promised work fits ``available`` FLOPs."""
        out = list(brackets)
        while self.committed(out, cands) > available:
            open_ = [j for j, b in enumerate(out) if len(self.members(cands, j)) < b.counts[0]]
            if not open_:
                break
            j = open_[-1]
            out[j] = self.resized(out[j], out[j].counts[0] - 1, self.members(cands, j))
        return out

    def resized(self, b: Bracket, n: int, cs: list[Candidate]) -> Bracket:
        """Bracket ``b`` with ``n`` candidates at its first rung; never fewer runs at a rung than were sent."""
        want = halving(n, b.start, b.last, self.eta)
        counts = [max(want[i] if i < len(want) else 0, self.sent(cs, b.start + i)) for i in range(len(b.counts))]
        while len(counts) > 1 and counts[-1] == 0:
            counts.pop()
        return Bracket(b.start, tuple(counts))

    def close_open_slots(self, brackets: list[Bracket], cands: list[Candidate]) -> list[Bracket]:
        """Every bracket cut to the candidates it has (no new ones: the space has no untried member left)."""
        return [
            self.resized(b, len(self.members(cands, j)), self.members(cands, j))
            if len(self.members(cands, j)) < b.counts[0]
            else b
            for j, b in enumerate(brackets)
        ]

    def extend(self, brackets: list[Bracket], cands: list[Candidate], available: float, limit: int) -> list[Bracket]:
        """More brackets in the plan's cycle for what the budget has left beyond the promised work (keeping
        ``MARGIN`` of it back), with at most ``limit`` new candidates."""
        free = (available - self.committed(brackets, cands)) * (1 - MARGIN)
        after = brackets[-1].start if brackets else -1
        if limit <= 0:
            return brackets
        return [*brackets, *layout(free, self.costs, self.eta, cycle=self.cycle, after=after, limit=limit)]

    # -- second chances: what is left after the brackets ------------------------------------------------------------
    def second_chance(self, brackets: list[Bracket], cands: list[Candidate], available: float) -> Job | None:
        """With nothing else to run: the stopped candidate ranked best within its rung continues to the next rung,
        if its typical cost fits what the budget has left beyond the promised work (keeping ``MARGIN`` back).

        Eligible: a pruned candidate no trial continues yet (job ``continue``: the runner makes the continuation),
        or a continuation waiting at the rung it finished (job ``promote``). A candidate's standing at rung k is its
        position in ``rank`` of every rung-k result (continued trials counted once) over the number of results;
        the smallest standing wins, ties to the higher rung, then the lower trial number."""
        best: tuple[tuple[float, int, int], Job] | None = None
        for k, pool, order in self.second_chance_rungs(brackets, cands, available):
            for pos, i in enumerate(order):
                job = self.second_chance_job(pool[i], k)
                if job is None:
                    continue
                score = (pos / len(pool), -k, pool[i].number)
                if best is None or score < best[0]:
                    best = (score, job)
                break  # the best eligible of this rung
        return None if best is None else best[1]

    def second_chance_rungs(
        self, brackets: list[Bracket], cands: list[Candidate], available: float
    ) -> list[tuple[int, list[Candidate], list[int]]]:
        """(rung k, every rung-k result with continued trials counted once, their ``rank`` order) for each rung
        whose next rung's typical cost fits what the budget has left beyond the promised work (``MARGIN`` kept)."""
        free = (available - self.committed(brackets, cands)) * (1 - MARGIN)
        continued = {c.continues for c in cands if c.continues is not None}
        out = []
        for k in range(self.top):
            if self.costs.run(k + 1, 0) > free:
                continue
            pool = [c for c in cands if k in c.points and c.number not in continued]
            order = rank([c.points[k][0] for c in pool], [c.points[k][1] for c in pool], keys=[c.key for c in pool])
            out.append((k, pool, order))
        return out

    @staticmethod
    def second_chance_job(c: Candidate, k: int) -> Job | None:
        """The job that moves ``c`` from rung ``k`` on, if it may have a second chance there: a pruned trial no
        trial continues yet (``continue``: the runner makes the continuation), or a continuation waiting at the
        rung it finished (``promote``)."""
        if c.status == "pruned" and c.rung == k and c.bracket != BRACKET_SECOND:
            return Job("continue", BRACKET_SECOND, k + 1, c.number, c.trial_id)
        if c.bracket == BRACKET_SECOND and c.status == "waiting" and c.rung == k == c.target:
            return Job("promote", BRACKET_SECOND, k + 1, c.number, c.trial_id)
        return None
