"""Setting up and running a search: the one library function behind `unetnas search` (training or replay)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from unetnas.errors import UserError
from unetnas.io import load_space
from unetnas.presets import PRESETS
from unetnas.search import study as S
from unetnas.search.budget import format_flops
from unetnas.search.config import SearchConfig
from unetnas.search.executor import Executor
from unetnas.search.groundtruth import GroundTruth
from unetnas.search.lease import DEFAULT_TTL_S
from unetnas.search.ledger import Ledger, LedgerError, LedgerWarning
from unetnas.search.plan import Plan, make_plan, members
from unetnas.search.storage import creation_lock, engine_for, open_storage, redact, resolve_storage
from unetnas.space import SearchSpace
from unetnas.train.recipe import Recipe, load_recipe

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "space" / "tiny.yaml"


ExecutorFactory = Callable[["Prepared", Plan], Executor]


@dataclass
class Prepared:
    cfg: SearchConfig
    space: SearchSpace
    recipe: Recipe
    plan: Plan
    presets: list[str] = field(default_factory=list)
    table: GroundTruth | None = None  # the ground-truth table when replaying
    proxy: Any = None  # the alignment proxy of a training search (None: validation loss only)


def prepare(cfg: SearchConfig, table: GroundTruth | None = None) -> Prepared:
    """Everything that needs no storage: space with constraints, recipe, presets to enqueue, the plan, and the
    ground-truth table when replaying (``table``: an already loaded one)."""
    if cfg.replay is not None and table is None:
        table = GroundTruth.load(cfg.replay)
    space_path = cfg.space or (table.meta_path("space") if table is not None else None) or DEFAULT_SPACE
    recipe_path = cfg.recipe or (table.meta_path("recipe") if table is not None else None)
    space = load_space(space_path)
    if cfg.max_gmacs is not None or cfg.max_params is not None:
        space = space.model_copy(
            update={  # `is None`: an explicit 0 is a constraint (that nothing meets), not "none"
                "max_gmacs": space.max_gmacs if cfg.max_gmacs is None else cfg.max_gmacs,
                "max_params": space.max_params if cfg.max_params is None else cfg.max_params,
            }
        )
        found = list(space.enumerate()) if space.size() <= 5000 else space.sample(5000, seed=cfg.seed)
        if not any(space.feasible(m) is None for m in found):
            raise UserError(
                f"no design of space {space.name!r} satisfies max_gmacs={space.max_gmacs}, "
                f"max_params={space.max_params}",
                field="--max-gmacs/--max-params",
            )
    from unetnas.proxies import select

    recipe = select.with_overrides(load_recipe(recipe_path), cfg.proxy)
    proxy = None if table is not None else select.build(recipe, cfg.data, members(space, 1)[0])
    presets = []
    if cfg.enqueue_presets:
        presets = [n for n, p in PRESETS.items() if space.contains(p) and space.feasible(p) is None]
    if table is not None and cfg.data != "shapes":
        raise UserError("a replay answers from the table; it reads no data", field="--data", value=cfg.data)
    plan = make_plan(
        cfg.budget,
        space,
        recipe,
        recipe.search,
        data=cfg.data,
        extra=len(presets),
        cycle=cfg.cycle,
        **(select.plan_args(proxy, recipe, cfg.data) if table is None else {}),
    )
    if table is not None:
        table.check_covers(members(space, 10**9), plan)
        if plan.tifa_rungs:  # the recipe's prompt count, read from the table's per-prompt alignments
            table.check_prompts(recipe.search.tifa_prompts)
    return Prepared(cfg, space, recipe, plan, presets, table, proxy)


def settings_of(p: Prepared) -> dict[str, Any]:
    replay = None if p.table is None else {"table": p.table.path.name, "digest": p.table.digest}
    return {
        "space": p.space.model_dump(mode="json"),
        "data": p.cfg.data,
        "objectives": list(p.cfg.objectives),
        "recipe": p.recipe.model_dump(mode="json"),
        "plan": p.plan.as_dict(),
        "presets": p.presets,
        "sampler": p.cfg.sampler,
        "replay": replay,
        "launch": launch_of(p.cfg),
    }


def launch_of(cfg: SearchConfig) -> dict[str, Any]:
    """What a worker joining the study needs to rebuild its configuration (``SearchConfig.launch``)."""
    return cfg.launch()


def rdb_storage(url: str) -> Any:
    """Optuna's storage at ``url`` as Optuna would use it (cached RDB storage, no Optuna heartbeats: leases do that
    job), every call retried on transient database errors (``retry.RetryingStorage``)."""
    from unetnas.search.retry import RetryingStorage
    from unetnas.search.trials import cached

    return RetryingStorage(cached(open_storage(url, heartbeat_interval=None)))


def close_storage(storage: Any) -> None:
    """Close the connections of a storage from ``rdb_storage`` before the same process opens the file again: on
    SQLite, opening a database file that this process has open drops the POSIX locks of its live connections, and
    they then read a stale or torn database."""
    from unetnas.search.trials import dispose

    dispose(storage)


def config_of_study(url: str, study: str, budget: float, replay: Path | None = None) -> SearchConfig:
    """The configuration a study was created with (``unetnas study create`` or ``unetnas search``), for a worker
    joining it; ``replay`` overrides where the ground-truth table lies on this machine."""
    import optuna

    storage = rdb_storage(url)
    try:
        st = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        raise UserError(
            f"no such study in {redact(url)}; create it first with `unetnas study create`", field="--study", value=study
        ) from None
    finally:
        close_storage(storage)
    launch = (st.user_attrs.get(S.SETTINGS_ATTR) or {}).get("launch")
    if launch is None:
        raise UserError(
            "was not made by this version of `unetnas study create` or `unetnas search`", field="--study", value=study
        )

    return SearchConfig.of_launch(launch, budget=budget, storage=url, study=study, replay=replay)


def open_search(
    p: Prepared,
    storage: Any = None,
    engine: sa.Engine | None = None,
    lease_ttl_s: float = DEFAULT_TTL_S,
    executor: ExecutorFactory | None = None,
):
    """Open (or create) the study, its ledger and the worker; returns (Search, storage url).

    ``executor``: the factory of the executor that runs rungs, called with (``p``, the plan in force);
    ``default_executor`` (training, or the replay of ``p.table``) when None. The seam where another executor plugs
    in (``docs/architecture.md``).

    ``storage`` (an Optuna storage) and ``engine`` (the ledger's database) override the URL of the config: the
    replay benchmark passes in-memory ones. Creating tables, study and budget happens under ``creation_lock``, so
    workers started at the same moment on a fresh database never race. ``lease_ttl_s``: see ``lease.Leases``.
    """
    cfg = p.cfg
    if storage is None:
        url = resolve_storage(cfg.storage, cfg.study, cfg.runs_dir)
        with creation_lock(url):
            storage = rdb_storage(url)
            engine = engine or engine_for(url)
            return _open(p, storage, engine, url, lease_ttl_s, executor or default_executor)
    url = "memory" if engine is not None else str(cfg.storage)
    return _open(p, storage, engine, url, lease_ttl_s, executor or default_executor)


def _open(p: Prepared, storage: Any, engine: sa.Engine, url: str, lease_ttl_s: float, executor: ExecutorFactory):
    from unetnas.search.lease import Leases
    from unetnas.search.proposer import Proposer
    from unetnas.search.runner import Search

    cfg = p.cfg
    study = S.open_study(storage, cfg.study, cfg.objectives, settings_of(p), changed=cfg.changed)
    ledger = Ledger(engine, cfg.study)
    raised = _budget_change(ledger, cfg)
    stored = study.user_attrs[S.SETTINGS_ATTR]
    try:
        plan = Plan.from_dict(stored["plan"])  # a resumed search keeps its first plan
    except (KeyError, TypeError) as err:
        raise UserError(
            f"was made by an older unetnas (its plan has no brackets: {err}); use another --study",
            field="--study",
            value=cfg.study,
        ) from None
    if cfg.enqueue_presets and not study.user_attrs.get("presets_enqueued"):
        for name in p.presets:
            study.enqueue_trial(p.space.params_of(PRESETS[name]), user_attrs={"preset": name})
        study.set_user_attr("presets_enqueued", True)
    if raised is not None:
        ledger.set_budget(cfg.budget)
        print(
            f"note: budget raised from {format_flops(raised)} to {format_flops(cfg.budget)} FLOPs: the plan keeps "
            f"its rungs and brackets; more brackets follow for the difference",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LedgerWarning)
        ledger.create(cfg.budget)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)  # stdout carries --json
    proposer = Proposer(study, p.space, cfg.sampler, cfg.seed, len(plan.rungs))
    search = Search(
        study=study,
        ledger=ledger,
        space=p.space,
        plan=plan,
        objectives=cfg.objectives,
        executor=executor(p, plan),
        proposer=proposer,
        runs_dir=None if p.table is not None else _trials_home(url, cfg),
        seed=cfg.seed,
        leases=Leases(engine, cfg.study, lease_ttl_s),
    )
    return search, redact(url)


def _budget_change(ledger: Ledger, cfg: SearchConfig) -> float | None:
    """The stored budget when ``cfg`` raises it (applied by the caller), None when it is the same or the study has
    none yet; a smaller budget is refused (one line, nothing written)."""
    try:
        stored = ledger.summary()["budget"]
    except (LedgerError, sa.exc.OperationalError, sa.exc.ProgrammingError):  # a new study (or no ledger table yet)
        return None
    if cfg.budget < stored:
        raise UserError(
            f"is below the {format_flops(stored)} FLOPs study {cfg.study!r} was made with; a budget may be raised, "
            f"never lowered",
            field="--budget",
            value=format_flops(cfg.budget),
        )
    return stored if cfg.budget > stored else None


def default_executor(p: Prepared, plan: Plan) -> Executor:
    """The replay's executor when ``p`` replays a table, else the training executor (with ``p``'s proxy)."""
    s = p.recipe.search
    if p.table is not None:
        from unetnas.search.replay_executor import ReplayExecutor

        return ReplayExecutor(p.table, p.recipe, s, seed=p.cfg.seed)
    from unetnas.search.executor import TrainingExecutor

    spec0 = members(p.space, 1)[0]
    return TrainingExecutor(
        p.recipe, s, p.cfg.data, resolution=spec0.resolution, text_len=spec0.text_len, seed=p.cfg.seed, proxy=p.proxy
    )


def _trials_home(url: str, cfg: SearchConfig) -> Path:
    """The study's folder for trial checkpoints (``<it>/trials/NNNN``), one per study.

    Beside an SQLite file: its folder when that is named after the study (the default ``runs/<study>/study.db``),
    else a sub-folder named after the study, so several studies in one database file never share trial folders.
    """
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        return folder if folder.name == cfg.study else folder / cfg.study
    return cfg.runs_dir.resolve() / cfg.study
