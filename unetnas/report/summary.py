"""The summary of a search run (what `unetnas search --json` and `unetnas worker --json` print, and what the
benchmarks read): the account, the counts, the Pareto set and the candidates stopped lower."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unetnas.search import study as S

if TYPE_CHECKING:
    from unetnas.search.runner import Search


def summary(search: Search, reason: str, wall_s: float, url: str) -> dict[str, Any]:
    """What `unetnas search --json` prints: the account, the counts, the Pareto set (last rung only) and the
    candidates that stopped lower (flagged with their rung), the brackets run and how proposals were made."""
    led = search.ledger.summary()
    states = S.trials_by_state(search.study)
    cands = search.candidates()
    brackets = search.brackets()
    proposals = [  # how each candidate was proposed (second chances were not: they continue a pruned one)
        t.user_attrs.get("proposal") or {}
        for t in search.study.get_trials(deepcopy=False)
        if "bracket" in t.user_attrs and "continues" not in t.user_attrs
    ]
    keep = ("trial", "rung", "alignment", "alignment_se", "tifa", "tifa_se", "gmacs", "params", "flops_spent", "spec")
    train_eval = search.wall["train"] + search.wall["eval"]
    return {
        "study": search.study.study_name,
        "storage": url,
        "budget": led["budget"],
        "spent": led["spent"],
        "reserved": led["reserved"],
        "unused_share": led["remaining"] / led["budget"],
        "by_kind": led["by_kind"],
        "n_trials": len(cands),
        "n_complete": len(states["complete"]),
        "n_pruned": sum(1 for c in cands if c.status == "pruned"),
        "n_closed": sum(1 for c in cands if c.status == "closed"),
        "n_failed": sum(1 for c in cands if c.status == "failed"),
        "candidates": sum(1 for c in cands if c.continues is None),  # designs proposed
        "second_chances": sum(1 for c in cands if c.continues is not None),  # pruned trials continued
        "brackets": len(brackets),
        "bracket_sizes": [{"start": b.start, "counts": list(b.counts)} for b in brackets],
        "top_rung": search.top,
        "feasible_members": search.plan.members,
        "space_members": search.plan.space_size,
        "plan_shrunk": search.plan.shrunk,
        "max_horizon_flops": search.plan.max_horizon_flops,
        "proposals": {
            "modelled": sum(1 for p in proposals if p.get("modelled")),
            "random": sum(1 for p in proposals if p and not p.get("modelled")),
            "presets": sum(1 for p in proposals if not p),
        },
        "pareto": [{k: r[k] for k in keep} for r in S.pareto_rows(search.study, search.objectives)],
        "lower_rungs": [
            {k: r[k] for k in (*keep, "measure", "status", "reason")} for r in S.lower_rung_rows(search.study)
        ],
        "reason": reason,
        "wall_s": wall_s,
        "train_s": search.wall["train"],
        "eval_s": search.wall["eval"],
        "overhead_share": max(0.0, 1 - train_eval / wall_s) if wall_s > 0 else 0.0,
    }
