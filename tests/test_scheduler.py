"""The scheduler's decisions (unetnas.search.scheduler) on hand-made candidates: ASHA promotion per bracket,
stopping, and bracket sizes adjusted to what the budget has left. No study, ledger or executor involved."""

from __future__ import annotations

import math

from unetnas.search.plan import Bracket, Costs, layout
from unetnas.search.scheduler import BRACKET_SECOND, Candidate, Decision, Job, Scheduler

# three rungs at 1, 2, 4 units of training; evaluation 0.1 a run
COSTS = Costs(rungs=(1.0, 2.0, 4.0), eval=(0.1, 0.1, 0.1))
ETA = 2
SE = (0.0, 0.0)


def cand(
    number: int,
    bracket: int = 0,
    *,
    rung: int = -1,
    target: int | None = None,
    status: str = "waiting",
    align: dict[int, float] | None = None,
    gmacs: float = 1.0,
) -> Candidate:
    points = {k: ((-a, gmacs), SE) for k, a in (align or {}).items()}
    return Candidate(
        number, 1000 + number, bracket, rung, rung if target is None else target, status, points, key=f"design-{number}"
    )


def test_new_candidates_fill_the_first_bracket_with_room() -> None:
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1)), Bracket(1, (3, 1))]
    assert s.next_job(brackets, []) == Job("new", 0, 0)
    full = [cand(i, rung=0, align={0: 0.1}) for i in range(4)]
    # bracket 0 full at rung 0, 4 results: promotions come before new candidates (quota 4 // 2 = 2)
    job = s.next_job(brackets, full)
    assert job is not None and job.kind == "promote" and job.rung == 1
    done = [
        cand(i, rung=0, status="pruned" if i > 1 else "waiting", target=1 if i < 2 else 0, align={0: 0.1})
        for i in range(4)
    ]
    done = [c if c.number > 1 else cand(c.number, rung=0, target=1, status="training", align={0: 0.1}) for c in done]
    assert s.next_job(brackets, done).kind == "resume"  # an unfinished rung first
    done = [
        cand(0, rung=1, target=1, align={0: 0.1, 1: 0.2}),
        cand(1, rung=1, target=1, align={0: 0.1, 1: 0.3}),
        *(cand(i, rung=0, status="pruned", align={0: 0.1}) for i in (2, 3)),
    ]
    job = s.next_job(brackets, done)
    assert job == Job("promote", 0, 2, 1, 1001)  # the better of the two at rung 1
    done[1] = cand(1, rung=2, target=2, status="complete", align={0: 0.1, 1: 0.3, 2: 0.4})
    assert s.next_job(brackets, done) == Job("new", 1, 1)  # bracket 0 done: bracket 1 starts at rung 1


def test_promotion_is_asynchronous_and_ranks_by_alignment_and_cost() -> None:
    """ASHA when nothing else can run: all 4 of the bracket started, 2 results in, 2 // 2 = 1 may go up already; the
    better one does (no worker waits for the rest). While slots are free, new candidates come first: a later result
    may beat the first ones (the exact successive-halving decision once the rung is full)."""
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1))]
    cs = [cand(0, rung=0, align={0: 0.1}), cand(1, rung=0, align={0: 0.5})]
    assert s.next_job(brackets, cs) == Job("new", 0, 0)  # free slots first
    elsewhere = [cand(i, rung=-1, target=0, status="running") for i in (2, 3)]  # held by other workers
    assert s.next_job(brackets, cs + elsewhere) == Job("promote", 0, 1, 1, 1001)
    cs[1] = cand(1, rung=0, target=1, status="training", align={0: 0.5})
    assert s.next_job(brackets, cs + elsewhere).kind == "resume"
    cs[1] = cand(1, rung=1, target=1, align={0: 0.5, 1: 0.6})
    assert s.next_job(brackets, cs + elsewhere) is None  # quota 1 used; the rest of the rung must come first
    # a cheaper design with an alignment within noise is preferred to a dearer one
    noisy = [
        Candidate(i, i, 0, 0, 0, "waiting", {0: ((-a, g), (0.03, 0.0))}, f"k{i}")
        for i, (a, g) in enumerate([(0.50, 2.0), (0.48, 1.0)])
    ]
    assert s.next_job(brackets, noisy + elsewhere) == Job("promote", 0, 1, 1, 1)


def test_a_full_rung_promotes_its_best_not_the_first_finished() -> None:
    """One worker: the best of all 4 results goes up, although the first 2 results alone would have allowed one."""
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1))]
    cs = [cand(i, rung=0, align={0: a}) for i, a in enumerate([0.1, 0.2, 0.3, 0.9])]
    assert s.next_job(brackets, cs) == Job("promote", 0, 1, 3, 1003)


def test_decided_candidates_stop_with_a_reason() -> None:
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1)), Bracket(0, (2,))]
    cs = [
        cand(0, rung=1, target=1, align={0: 0.4, 1: 0.5}),
        cand(1, rung=1, target=1, align={0: 0.3, 1: 0.1}),
        cand(2, rung=0, align={0: 0.1}),
        cand(3, rung=0, align={0: 0.2}),
        cand(4, 1, rung=0, align={0: 0.9}),
    ]
    stopped = {c.number: why for c, why in s.decided(brackets, cs)}
    assert stopped == {
        2: "not among the best 2 of 4 at rung 0",
        3: "not among the best 2 of 4 at rung 0",
        4: "its bracket ends at rung 0",
    }
    # rung 1 of bracket 0 is not decided until its promotion is made
    assert 1 not in stopped
    cs[0] = cand(0, rung=2, target=2, status="complete", align={0: 0.4, 1: 0.5, 2: 0.6})
    assert {c.number for c, _ in s.decided(brackets, cs)} == {1, 2, 3, 4}
    # a rung with a slot still open is not decided
    assert s.decided([Bracket(0, (4, 2, 1))], [cand(0, rung=0, align={0: 0.1})]) == []


def test_shrink_cancels_unstarted_slots_to_fit_the_budget() -> None:
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1)), Bracket(1, (3, 1))]
    full = s.committed(brackets, [])
    assert math.isclose(full, 4 * 1.1 + 2 * 1.1 + 1 * 2.1 + 3 * 2.1 + 1 * 2.1)
    assert s.shrink(brackets, [], full) == brackets
    fitted = s.shrink(brackets, [], full - 2.0)  # one candidate of bracket 1 less (2.1 of work)
    assert fitted == [Bracket(0, (4, 2, 1)), Bracket(1, (2, 1))]
    assert s.committed(fitted, []) <= full - 2.0
    # started candidates are never cancelled: bracket 1 keeps the two it has
    started = [cand(i, 1, rung=1, align={1: 0.1}) for i in range(2)]
    squeezed = s.shrink(brackets, started, 0.0)
    assert squeezed[1].counts[0] == 2 and squeezed[0].counts == (0,)  # nothing left: bracket 0 is cancelled


def test_extend_continues_hyperbands_cycle_with_what_is_left() -> None:
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1))]
    done = [cand(0, rung=2, target=2, status="complete", align={0: 0.1, 1: 0.1, 2: 0.1})]
    assert s.extend(brackets, done, 0.5, limit=10) == brackets  # not even one run fits
    more = s.extend(brackets, done, 100.0, limit=10)
    assert more[0] == brackets[0] and more[1].start == 1  # the next type in the cycle
    assert sum(b.counts[0] for b in more[1:]) <= 10
    assert s.extend(brackets, done, 100.0, limit=0) == brackets  # the space has no untried design left


def test_layout_is_hyperband_then_the_best_partial_bracket() -> None:
    full = layout(1e9, COSTS, ETA, limit=30)
    assert [b.start for b in full[:3]] == [0, 1, 2]  # Hyperband's cycle of bracket types
    assert [b.counts for b in full[:3]] == [(4, 2, 1), (3, 1), (3,)]  # ceil(K / (s + 1) * eta^s), halved
    assert sum(b.counts[0] for b in full) <= 30
    tight = layout(COSTS.bracket(Bracket(0, (4, 2, 1))) + 1.5, COSTS, ETA)
    assert tight[0] == Bracket(0, (4, 2, 1)) and len(tight) == 2
    assert COSTS.bracket(tight[1]) <= 1.5  # the partial bracket that fits


def test_decide_shrinks_extends_and_stops_at_the_feasible_members() -> None:
    """``decide`` is the whole decision: a pure function of (brackets, candidates, budget left, members left)."""
    s = Scheduler(COSTS, ETA)
    brackets = [Bracket(0, (4, 2, 1))]
    roomy = s.decide(brackets, [], available=1e9, left=10)
    assert roomy == Decision(Job("new", 0, 0), brackets)  # room: the plan as it is
    tight = s.decide(brackets, [], available=COSTS.run(0, 0) * 2.5, left=10)
    assert tight.job == Job("new", 0, 0) and tight.brackets[0].counts[0] < 4  # unstarted slots cancelled
    done = [cand(0, rung=2, target=2, status="complete", align={0: 0.1, 1: 0.2, 2: 0.3})]
    done += [cand(i, rung=0, status="pruned", align={0: 0.1}) for i in (1, 2, 3)]
    done += [cand(4, rung=1, status="pruned", align={0: 0.2, 1: 0.1})]
    full = [Bracket(0, (4, 2, 1))]
    more = s.decide(full, done, available=1e3, left=10)  # all done, budget left: more brackets follow
    assert len(more.brackets) > 1 and more.job is not None and more.job.kind == "new"
    assert not s.over(full, done, available=1e3, left=10)
    none_left = s.decide(full, done, available=1e3, left=0)  # no feasible member left: no new candidate starts,
    assert none_left.brackets == full and none_left.job.kind == "continue"  # a pruned one gets a second chance
    assert not s.over(full, done, available=1e3, left=0)
    short = COSTS.run(1, 0) * 0.9  # ... if the budget left pays for its next rung
    assert s.decide(full, done, available=short, left=0) == Decision(None, full) and s.over(full, done, short, 0)
    assert s.over(full, done, available=0.0, left=10)  # nor when the budget is spent


def test_second_chances_go_to_the_best_standing_within_a_rung() -> None:
    """Nothing left to start, budget left: the stopped candidate best placed within its rung continues (position /
    results at the rung, over all brackets); a pruned one as a new trial (job "continue"), a continuation waiting at
    its rung by promotion; a continued trial is not eligible again and its continuation stands in for it."""
    s = Scheduler(COSTS, ETA)
    full = [Bracket(0, (4, 2, 1))]
    done = [
        cand(0, rung=2, target=2, status="complete", align={0: 0.9, 1: 0.9, 2: 0.9}),
        cand(1, rung=1, target=1, status="pruned", align={0: 0.8, 1: 0.5}),  # 2nd of 2 at rung 1: standing 1/2
        cand(2, rung=0, status="pruned", align={0: 0.7}),  # 3rd of 4 at rung 0: standing 2/4 (ties to the higher)
        cand(3, rung=0, status="pruned", align={0: 0.1}),
    ]
    assert s.decide(full, done, available=1e3, left=0).job == Job("continue", BRACKET_SECOND, 2, 1, 1001)
    # trial 4 continues trial 1 and finished rung 2: next, trial 2 (standing 2/4 at rung 0, trial 1 no longer counts)
    cont = Candidate(4, 1004, BRACKET_SECOND, 2, 2, "complete", {**done[1].points, 2: ((-0.6, 1.0), SE)}, "design-1", 1)
    assert s.decide(full, [*done, cont], available=1e3, left=0).job == Job("continue", BRACKET_SECOND, 1, 2, 1002)
    # trial 5 continues trial 2 and waits at rung 1, ranked first there: promoted in place to rung 2
    waiting = Candidate(
        5, 1005, BRACKET_SECOND, 1, 1, "waiting", {0: done[2].points[0], 1: ((-0.95, 1.0), SE)}, "design-2", 2
    )
    assert s.decide(full, [*done, cont, waiting], available=1e3, left=0).job == Job(
        "promote", BRACKET_SECOND, 2, 5, 1005
    )
    # a continuation under way counts as promised work: nothing else fits the budget left
    running = Candidate(5, 1005, BRACKET_SECOND, 1, 2, "training", waiting.points, "design-2", 2)
    tight = s.committed(full, [*done, cont, running]) + COSTS.run(1, 0) * 0.9
    assert s.decide(full, [*done, cont, running], available=tight, left=0).job == Job(
        "resume", BRACKET_SECOND, 2, 5, 1005
    )
    assert s.second_chance(full, [*done, cont, running], available=tight) is None
