"""Setting up and running a search: the one library function behind `unetnas search` (training or replay)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.presets import PRESETS
from unetnas.search import study as S
from unetnas.search.ledger import Ledger, LedgerWarning
from unetnas.search.plan import Plan, make_plan, members
from unetnas.search.storage import engine_for, open_storage, redact, resolve_storage
from unetnas.space import SearchSpace
from unetnas.train.recipe import Recipe, load_recipe

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "space" / "tiny.yaml"


@dataclass
class SearchConfig:
    budget: float
    space: Path | None = None  # default: space/tiny.yaml, or the replayed table's space
    data: str = "shapes"
    recipe: Path | None = None  # default: trials/short.yaml, or the replayed table's recipe
    storage: str | None = None
    study: str = "demo"
    objectives: tuple[str, ...] = ("alignment", "gmacs")
    max_gmacs: float | None = None
    max_params: float | None = None
    sampler: str = "tpe"
    seed: int = 0
    enqueue_presets: bool = False
    runs_dir: Path = Path("runs")
    replay: Path | None = None  # a ground-truth table: answer rungs from it instead of training
    cycle: tuple[int, ...] | None = None  # bracket types to lay out (None: Hyperband's); see plan.make_plan


@dataclass
class Prepared:
    cfg: SearchConfig
    space: SearchSpace
    recipe: Recipe
    plan: Plan
    presets: list[str] = field(default_factory=list)
    table: Any = None  # replay.GroundTruth when replaying


def prepare(cfg: SearchConfig, table: Any = None) -> Prepared:
    """Everything that needs no storage: space with constraints, recipe, presets to enqueue, the plan, and the
    ground-truth table when replaying (``table``: an already loaded one)."""
    if cfg.replay is not None and table is None:
        from unetnas.search.replay import GroundTruth

        table = GroundTruth.load(cfg.replay)
    space_path = cfg.space or (table.meta_path("space") if table is not None else None) or DEFAULT_SPACE
    recipe_path = cfg.recipe or (table.meta_path("recipe") if table is not None else None)
    space = load_space(space_path)
    if cfg.max_gmacs is not None or cfg.max_params is not None:
        space = space.model_copy(update={  # `is None`: an explicit 0 is a constraint (that nothing meets), not "none"
            "max_gmacs": space.max_gmacs if cfg.max_gmacs is None else cfg.max_gmacs,
            "max_params": space.max_params if cfg.max_params is None else cfg.max_params})  # fmt: skip
        found = list(space.enumerate()) if space.size() <= 5000 else space.sample(5000, seed=cfg.seed)
        if not any(space.feasible(m) is None for m in found):
            raise UserError(f"no design of space {space.name!r} satisfies max_gmacs={space.max_gmacs}, "
                            f"max_params={space.max_params}", field="--max-gmacs/--max-params")  # fmt: skip
    recipe = load_recipe(recipe_path)
    presets = []
    if cfg.enqueue_presets:
        presets = [n for n, p in PRESETS.items() if space.contains(p) and space.feasible(p) is None]
    if table is not None and cfg.data != "shapes":
        raise UserError("a replay answers from the table; it reads no data", field="--data", value=cfg.data)
    plan = make_plan(cfg.budget, space, recipe, recipe.search, data=cfg.data, extra=len(presets), cycle=cfg.cycle)
    if table is not None:
        table.check_covers(members(space, 10**9), plan)
    return Prepared(cfg, space, recipe, plan, presets, table)


def settings_of(p: Prepared) -> dict[str, Any]:
    replay = None if p.table is None else {"table": p.table.path.name, "digest": p.table.digest}
    return {"space": p.space.model_dump(mode="json"), "data": p.cfg.data, "objectives": list(p.cfg.objectives),
            "recipe": p.recipe.model_dump(mode="json"), "plan": p.plan.as_dict(), "presets": p.presets,
            "sampler": p.cfg.sampler, "replay": replay}  # fmt: skip


def open_search(p: Prepared, storage: Any = None, engine: sa.Engine | None = None):
    """Open (or create) the study, its ledger and the worker; returns (Search, storage url).

    ``storage`` (an Optuna storage) and ``engine`` (the ledger's database) override the URL of the config: the
    replay benchmark passes in-memory ones.
    """
    from unetnas.search.proposer import Proposer
    from unetnas.search.runner import Search

    cfg = p.cfg
    if storage is None:
        url = resolve_storage(cfg.storage, cfg.study, cfg.runs_dir)
        storage = open_storage(url, heartbeat_interval=None)
        engine = engine or engine_for(url)
    else:
        url = "memory" if engine is not None else str(cfg.storage)
    study = S.open_study(storage, cfg.study, cfg.objectives, settings_of(p))
    stored = study.user_attrs[S.SETTINGS_ATTR]
    try:
        plan = Plan.from_dict(stored["plan"])  # a resumed search keeps its first plan
    except (KeyError, TypeError) as err:
        raise UserError(f"was made by an older unetnas (its plan has no brackets: {err}); use another --study",
                        field="--study", value=cfg.study) from None  # fmt: skip
    if cfg.enqueue_presets and not study.user_attrs.get("presets_enqueued"):
        for name in p.presets:
            study.enqueue_trial(p.space.params_of(PRESETS[name]), user_attrs={"preset": name})
        study.set_user_attr("presets_enqueued", True)
    ledger = Ledger(engine, cfg.study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LedgerWarning)
        ledger.create(cfg.budget)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)  # stdout carries --json
    ledger.recover_stale(older_than_s=6 * 3600)
    proposer = Proposer(study, p.space, cfg.sampler, cfg.seed, len(plan.rungs))
    search = Search(study=study, ledger=ledger, space=p.space, plan=plan, objectives=cfg.objectives,
                    executor=_executor(p, plan), proposer=proposer,
                    runs_dir=None if p.table is not None else _trials_home(url, cfg), seed=cfg.seed)  # fmt: skip
    return search, redact(url)


def _executor(p: Prepared, plan: Plan):
    s = p.recipe.search
    if p.table is not None:
        from unetnas.search.replay import ReplayExecutor

        return ReplayExecutor(p.table, p.recipe, s, seed=p.cfg.seed)
    from unetnas.search.executor import TrainingExecutor

    spec0 = members(p.space, 1)[0]
    return TrainingExecutor(p.recipe, s, p.cfg.data, resolution=spec0.resolution, text_len=spec0.text_len,
                            seed=p.cfg.seed)  # fmt: skip


def _trials_home(url: str, cfg: SearchConfig) -> Path:
    """The study's folder for trial checkpoints (``<it>/trials/NNNN``), one per study.

    Beside an SQLite file: its folder when that is named after the study (the default ``runs/<study>/study.db``),
    else a sub-folder named after the study, so several studies in one database file never share trial folders.
    """
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        return folder if folder.name == cfg.study else folder / cfg.study
    return cfg.runs_dir / cfg.study
