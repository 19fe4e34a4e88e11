"""Setting up and running a search: the one library function behind `unetnas search`."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.presets import PRESETS
from unetnas.search import study as S
from unetnas.search.ledger import Ledger, LedgerWarning
from unetnas.search.plan import Plan, make_plan
from unetnas.search.storage import engine_for, open_storage, redact, resolve_storage
from unetnas.space import SearchSpace
from unetnas.train.recipe import Recipe, load_recipe

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "space" / "tiny.yaml"


@dataclass
class SearchConfig:
    budget: float
    space: Path = DEFAULT_SPACE
    data: str = "shapes"
    recipe: Path | None = None
    storage: str | None = None
    study: str = "demo"
    objectives: tuple[str, ...] = ("alignment", "gmacs")
    max_gmacs: float | None = None
    max_params: float | None = None
    sampler: str = "tpe"
    seed: int = 0
    enqueue_presets: bool = False
    runs_dir: Path = Path("runs")


@dataclass
class Prepared:
    cfg: SearchConfig
    space: SearchSpace
    recipe: Recipe
    plan: Plan
    presets: list[str] = field(default_factory=list)


def prepare(cfg: SearchConfig) -> Prepared:
    """Everything that needs no storage: space with constraints, recipe, presets to enqueue, the plan."""
    space = load_space(cfg.space)
    if cfg.max_gmacs is not None or cfg.max_params is not None:
        space = space.model_copy(update={  # `is None`: an explicit 0 is a constraint (that nothing meets), not "none"
            "max_gmacs": space.max_gmacs if cfg.max_gmacs is None else cfg.max_gmacs,
            "max_params": space.max_params if cfg.max_params is None else cfg.max_params})  # fmt: skip
        members = list(space.enumerate()) if space.size() <= 5000 else space.sample(5000, seed=cfg.seed)
        if not any(space.feasible(m) is None for m in members):
            raise UserError(f"no design of space {space.name!r} satisfies max_gmacs={space.max_gmacs}, "
                            f"max_params={space.max_params}", field="--max-gmacs/--max-params")  # fmt: skip
    recipe = load_recipe(cfg.recipe)
    presets = []
    if cfg.enqueue_presets:
        presets = [n for n, p in PRESETS.items() if space.contains(p) and space.feasible(p) is None]
    plan = make_plan(cfg.budget, space, recipe, recipe.search, extra=len(presets))
    return Prepared(cfg, space, recipe, plan, presets)


def settings_of(p: Prepared) -> dict[str, Any]:
    return {"space": p.space.model_dump(mode="json"), "data": p.cfg.data, "objectives": list(p.cfg.objectives),
            "recipe": p.recipe.model_dump(mode="json"), "plan": p.plan.as_dict(), "presets": p.presets}  # fmt: skip


def open_search(p: Prepared):
    """Open (or create) the study and its ledger; returns (Search, storage url)."""
    from unetnas.search.runner import Search

    cfg = p.cfg
    url = resolve_storage(cfg.storage, cfg.study, cfg.runs_dir)
    storage = open_storage(url, heartbeat_interval=None)
    sampler = S.make_sampler(cfg.sampler, cfg.seed)
    study = S.open_study(storage, cfg.study, cfg.objectives, sampler, settings_of(p))
    if cfg.enqueue_presets and not study.user_attrs.get("presets_enqueued"):
        for name in p.presets:
            study.enqueue_trial(p.space.params_of(PRESETS[name]), user_attrs={"preset": name})
        study.set_user_attr("presets_enqueued", True)
    ledger = Ledger(engine_for(url), cfg.study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LedgerWarning)
        ledger.create(cfg.budget)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)  # stdout carries --json
    ledger.recover_stale(older_than_s=6 * 3600)
    stored = study.user_attrs[S.SETTINGS_ATTR]
    plan = Plan(**stored["plan"]) if stored.get("plan") else p.plan  # a resumed search keeps its first plan
    runs = _trials_home(url, cfg)
    search = Search(study=study, ledger=ledger, space=p.space, recipe=p.recipe, plan=plan, data=cfg.data,
                    objectives=cfg.objectives, runs_dir=runs, seed=cfg.seed)  # fmt: skip
    return search, redact(url)


def _trials_home(url: str, cfg: SearchConfig) -> Path:
    """The study's folder for trial checkpoints (``<it>/trials/NNNN``), one per study.

    Beside an SQLite file: its folder when that is named after the study (the default ``runs/<study>/study.db``),
    else a sub-folder named after the study, so several studies in one database file never share trial folders.
    """
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        return folder if folder.name == cfg.study else folder / cfg.study
    return cfg.runs_dir / cfg.study
