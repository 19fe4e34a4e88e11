"""A DDIM step sweep of the Pareto designs: alignment at several sampling step counts, for the report's sampling-
efficiency panel (Mei et al. 2024: a smaller model sampled longer can beat a bigger one at the same sampling cost).

A search scores alignment at one step count (the recipe's ``sample_steps``), so at any scale that panel has one
point per design. ``sweep_steps`` loads each top-rung Pareto design's checkpoint from its trial folder, scores it
with the proxy of the trial's own recipe (same prompts, same initial noise: common random numbers) at every step
count asked, and writes ``steps.json`` into the trial folder; ``records.trial_record`` merges it into the design's
last rung as ``alignment_by_steps``. The sweep's FLOPs are spent after the search, outside its budget (returned, and
printed by ``unetnas report --steps``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unetnas.errors import UserError

STEPS_FILE = "steps.json"  # in a trial folder: {"rung": K, "alignment_by_steps": {steps: value}, "se": {...}}


def parse_steps(text: str, field: str = "--steps") -> list[int]:
    """``"5,10,20"`` -> [5, 10, 20]: at least two distinct positive step counts, sorted."""
    try:
        steps = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(
            "must be DDIM step counts separated by commas, e.g. 5,10,20,50", field=field, value=text
        ) from None
    if len(steps) < 2 or steps[0] < 1:
        raise UserError("needs at least two distinct positive step counts", field=field, value=text)
    return steps


def read_steps(folder: Path | None) -> tuple[int | None, dict[int, float]]:
    """(rung, {steps: alignment}) from a trial folder's ``steps.json``; (None, {}) when absent or unreadable."""
    path = folder / STEPS_FILE if folder else None
    if path is None or not path.is_file():
        return None, {}
    try:
        raw = json.loads(path.read_text())
        return int(raw["rung"]), {int(k): float(v) for k, v in raw["alignment_by_steps"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}


def sweep_steps(
    study: Any,
    url: str,
    steps: Sequence[int],
    top: int | None = None,
    on_design: Callable[[int, dict[int, float]], None] | None = None,
) -> float:
    """Score every top-rung Pareto design (best alignment first, at most ``top``) at each of ``steps``; returns the
    FLOPs spent. A design whose checkpoint is missing is refused in one line (``UserError``), before any scoring."""
    from unetnas.export import CHECKPOINT_WEIGHTS, trial_folders
    from unetnas.proxies import Subject
    from unetnas.proxies.select import build
    from unetnas.search import study as S

    settings = study.user_attrs.get(S.SETTINGS_ATTR) or {}
    rows = S.pareto_rows(study, tuple(settings.get("objectives", ())))[: top or None]
    if not rows:
        raise UserError("has no top-rung design to sweep yet", field="--study", value=study.study_name)
    todo = []
    for row in rows:
        t = study.trials[row["trial"]]
        folder = next((f for f in trial_folders(t, url, study.study_name) if (f / CHECKPOINT_WEIGHTS).is_file()), None)
        if folder is None:
            raise UserError(
                "no checkpoint found for the DDIM step sweep (a replayed search trains none)",
                field="--study",
                value=f"{study.study_name} trial {t.number}",
            )
        todo.append((t, folder))
    spent = 0.0
    for t, folder in todo:
        subject = Subject.from_checkpoint(str(folder))
        proxy = build(subject.recipe, settings.get("data", "shapes"), subject.spec)
        if proxy is None or not hasattr(proxy, "steps"):
            raise UserError("the study's proxy samples no images: nothing to sweep", field="--steps")
        by_steps, se = {}, {}
        for s in steps:
            proxy.steps = s
            res = proxy.score(subject)
            spent += res.flops
            by_steps[s], se[s] = float(res.value), res.details.get("alignment_se")
        rung = t.user_attrs.get("rung")
        (folder / STEPS_FILE).write_text(json.dumps({"rung": rung, "alignment_by_steps": by_steps, "se": se}))
        if on_design is not None:
            on_design(t.number, by_steps)
    return spent
