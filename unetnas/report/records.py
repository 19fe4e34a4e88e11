"""Typed records of a study, extracted by pure functions (no drawing, no I/O beyond reading the study).

What a search stores (see ``unetnas.search.study``) and what is read here:

- study user attr ``unetnas_settings``: objectives (names among ``alignment``, ``gmacs``, ``params``), the plan
  (``rungs``: cumulative training FLOPs per candidate), the recipe (``sample_steps``, ...);
- per trial user attrs: ``spec``, ``gmacs``, ``params``, ``train_flops_per_sample``, ``flops_spent``, ``dir``,
  ``rung`` (last finished rung), ``status``, ``top_rung``, ``preset`` and one ``rung_K`` record per finished rung
  (``steps``, ``samples``, ``train_flops``, ``val_loss``, ``tifa``/``tifa_se``, ``alignment``/``alignment_se`` with
  alignment the text-blind-corrected TIFA, optionally ``alignment_by_steps`` = {DDIM steps: alignment});
- intermediate values: validation loss keyed by training samples seen.

Any of these may be missing (older studies, trials that failed early): the extractors skip what is absent rather
than guess. Studies that never stored ``alignment`` fall back to raw ``tifa``, and the metric says so in its label.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from unetnas.report.steps import read_steps
from unetnas.search.promotion import pareto

SETTINGS_ATTR = "unetnas_settings"  # same key as unetnas.search.study.SETTINGS_ATTR
DIRECTIONS = {"alignment": "maximize", "gmacs": "minimize", "params": "minimize"}
DEFAULT_OBJECTIVES = ("alignment", "gmacs")
FADED_STATUSES = ("pruned", "stopped", "failed")


# -- typed records -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """The alignment number a study's records carry: ``field`` in rung records, ``se_field`` its standard error."""

    field: str  # "alignment" (text-blind-corrected TIFA) or "tifa" (raw TIFA, older studies)
    label: str

    @property
    def se_field(self) -> str:
        return f"{self.field}_se"


ALIGNMENT = Metric("alignment", "alignment (TIFA, text-blind corrected)")
RAW_TIFA = Metric("tifa", "TIFA (raw: study stores no text-blind correction)")


@dataclass(frozen=True)
class RungRecord:
    """One finished rung of one trial. FLOPs are cumulative training FLOPs of the trial at the rung's end."""

    rung: int
    train_flops: float
    steps: int | None = None
    samples: int | None = None
    val_loss: float | None = None
    wall_s: float | None = None
    tifa: float | None = None
    tifa_se: float | None = None
    alignment: float | None = None
    alignment_se: float | None = None
    alignment_by_steps: dict[int, float] = field(default_factory=dict)

    def score(self, metric: Metric) -> float | None:
        return getattr(self, metric.field)

    def score_se(self, metric: Metric) -> float | None:
        return getattr(self, metric.se_field)


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the search with what the report needs."""

    number: int
    state: str  # Optuna's TrialState name
    status: str  # the search's: new|training|waiting|complete|stopped|pruned|failed (or the state, lower case)
    name: str
    spec: dict[str, Any]
    gmacs: float | None
    params: int | None
    rung: int | None
    top_rung: bool
    preset: str | None = None
    flops_spent: float | None = None
    train_flops_per_sample: float | None = None
    folder: Path | None = None
    rungs: tuple[RungRecord, ...] = ()
    val_curve: tuple[tuple[float, float], ...] = ()  # (training samples seen, validation loss)
    values: tuple[float, ...] | None = None  # Optuna objective values (COMPLETE trials)

    @property
    def faded(self) -> bool:
        """Not a finished candidate: pruned, stopped early or failed."""
        return self.status in FADED_STATUSES or self.state in ("PRUNED", "FAIL")

    def last_scored(self, metric: Metric) -> RungRecord | None:
        """The highest rung that measured ``metric``."""
        scored = [r for r in self.rungs if r.score(metric) is not None]
        return max(scored, key=lambda r: r.rung) if scored else None


@dataclass(frozen=True)
class StudyInfo:
    name: str
    objectives: tuple[str, ...]
    settings: dict[str, Any]
    metric: Metric
    n_rungs: int | None  # rungs in the plan, when stored

    @property
    def horizon_unit(self) -> str:
        """Unit of the study's rungs: "flops" (equal training FLOPs) or "samples" (equal steps x batch)."""
        return (self.settings.get("plan") or {}).get("unit", "flops")

    @property
    def sample_steps(self) -> int | None:
        steps = (self.settings.get("recipe") or {}).get("sample_steps")
        return int(steps) if steps else None


@dataclass(frozen=True)
class DesignPoint:
    """A design on the alignment-vs-cost plane: its last scored rung, and whether it is on the Pareto front."""

    trial: int
    name: str
    preset: str | None
    gmacs: float
    params: int | None
    alignment: float
    alignment_se: float | None
    rung: int
    top_rung: bool
    on_front: bool
    spec_text: str
    alignment_by_steps: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CurvePoint:
    train_flops: float
    value: float
    se: float | None = None


@dataclass(frozen=True)
class Curve:
    """One proxy of one trial against its cumulative training FLOPs."""

    trial: int
    name: str
    proxy: str  # "val_loss" | metric field
    faded: bool
    points: tuple[CurvePoint, ...]


@dataclass(frozen=True)
class SamplingPoint:
    """Alignment of a design sampled with ``steps`` DDIM steps; cost = inference GMACs x steps."""

    trial: int
    name: str
    steps: int
    gmacs: float
    alignment: float

    @property
    def cost(self) -> float:
        return self.gmacs * self.steps


# -- extraction --------------------------------------------------------------------------------------------------
def settings_of(study: optuna.Study) -> dict[str, Any]:
    return dict(study.user_attrs.get(SETTINGS_ATTR) or {})


def objectives_of(study: optuna.Study) -> tuple[str, ...]:
    """The study's objective names: from its settings, else its metric names, else alignment+gmacs."""
    names = settings_of(study).get("objectives") or study.metric_names
    if names and all(n in DIRECTIONS for n in names):
        return tuple(names)
    return DEFAULT_OBJECTIVES[: len(study.directions)]


def name_objectives(study: optuna.Study) -> tuple[str, ...]:
    """Set the study's Optuna metric names to its objective names (optuna-dashboard shows them); returns them.

    The search calls this right after creating (or loading) its study. Idempotent.
    """
    names = objectives_of(study)
    if len(names) == len(study.directions) and tuple(study.metric_names or ()) != names:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(names))
    return names


def rung_record(raw: dict[str, Any]) -> RungRecord:
    """A ``rung_K`` user attr as a ``RungRecord`` (unknown keys ignored, JSON string keys of
    ``alignment_by_steps`` made integers)."""

    def num(key: str) -> float | None:
        v = raw.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    by_steps = {int(k): float(v) for k, v in (raw.get("alignment_by_steps") or {}).items() if v is not None}
    return RungRecord(
        rung=int(raw.get("rung", -1)),
        train_flops=float(raw.get("train_flops") or 0.0),
        steps=raw.get("steps"),
        samples=raw.get("samples"),
        val_loss=num("val_loss"),
        wall_s=num("wall_s"),
        tifa=num("tifa"),
        tifa_se=num("tifa_se"),
        alignment=num("alignment"),
        alignment_se=num("alignment_se"),
        alignment_by_steps=by_steps,
    )


def trial_record(t: optuna.trial.FrozenTrial, n_rungs: int | None = None) -> TrialRecord:
    """One frozen trial as a ``TrialRecord``. ``n_rungs`` (the plan's) decides ``top_rung`` when the trial does not
    store it: a trial reached the top if its last rung is the plan's last."""
    ua = t.user_attrs
    raws = sorted(
        ({"rung": int(key[5:]), **raw} for key, raw in ua.items() if _is_rung_key(key) and isinstance(raw, dict)),
        key=lambda raw: raw["rung"],
    )
    rungs = [rung_record(raw) for raw in raws]
    rung = ua.get("rung")
    rung = rung if isinstance(rung, int) and rung >= 0 else (rungs[-1].rung if rungs else None)
    swept_rung, swept = read_steps(Path(ua["dir"]) if ua.get("dir") else None)  # `unetnas report --steps`
    if swept:
        rungs = [
            replace(r, alignment_by_steps={**r.alignment_by_steps, **swept}) if r.rung == swept_rung else r
            for r in rungs
        ]
    if "top_rung" in ua:
        top = bool(ua["top_rung"])
    elif n_rungs is not None:
        top = rung is not None and rung >= n_rungs - 1
    else:
        top = t.state == TrialState.COMPLETE and ua.get("status") in (None, "complete")
    spec = ua.get("spec") or {}
    preset = ua.get("preset")
    status = ua.get("status") or t.state.name.lower()
    if t.state == TrialState.FAIL:
        status = "failed"
    elif t.state == TrialState.PRUNED:
        status = "pruned"
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        status=status,
        name=preset or spec.get("name") or f"trial {t.number}",
        spec=spec,
        gmacs=_float(ua.get("gmacs", raws[-1].get("gmacs") if raws else None)),
        params=_int(ua.get("params", raws[-1].get("params") if raws else None)),
        rung=rung,
        top_rung=top,
        preset=preset,
        flops_spent=_float(ua.get("flops_spent")),
        train_flops_per_sample=_float(ua.get("train_flops_per_sample")),
        folder=Path(ua["dir"]) if ua.get("dir") else None,
        rungs=tuple(rungs),
        val_curve=tuple(sorted((float(k), float(v)) for k, v in t.intermediate_values.items())),
        values=tuple(t.values) if t.values else None,
    )


def choose_metric(trials: Iterable[TrialRecord]) -> Metric:
    """Corrected alignment if any rung stores it, else raw TIFA."""
    any_alignment = any(r.alignment is not None for t in trials for r in t.rungs)
    return ALIGNMENT if any_alignment else RAW_TIFA


def study_records(study: optuna.Study) -> tuple[StudyInfo, list[TrialRecord]]:
    """The study's settings and one record per trial that got a design (infeasible draws have no spec)."""
    settings = settings_of(study)
    plan = settings.get("plan") or {}
    n_rungs = len(plan["rungs"]) if plan.get("rungs") else None
    trials = [trial_record(t, n_rungs) for t in study.get_trials(deepcopy=False)]
    trials = [t for t in trials if t.spec or t.rungs]
    info = StudyInfo(study.study_name, objectives_of(study), settings, choose_metric(trials), n_rungs)
    return info, trials


def spec_text(spec: dict[str, Any]) -> str:
    """A one-line summary of a UNetSpec dict: widths, attention kind x depth per level, mid block, head dim."""
    if not spec:
        return "(no spec)"
    attn = spec.get("attention") or []
    depth = spec.get("transformer_depth") or []
    levels = ", ".join(f"{a}x{d}" if d else "-" for a, d in zip(attn, depth))
    mid = f"{spec.get('mid_attention')}x{spec.get('mid_depth')}" if spec.get("mid_depth") else "-"
    return (
        f"C{spec.get('base_channels')} mult {spec.get('channel_mult')} res {spec.get('layers_per_block')}; "
        f"attn [{levels}]; mid {mid}; head {spec.get('head_dim')}"
    )


def design_points(
    trials: Sequence[TrialRecord], metric: Metric, objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> list[DesignPoint]:
    """Every design with a scored rung, at its last scored rung, sorted by GMACs. The Pareto front (alignment
    maximised, gmacs/params minimised as in ``objectives``) is computed over designs that reached the top rung only;
    lower-rung designs are never on it (their alignment is measured after less training)."""
    pts = []
    for t in trials:
        rec = t.last_scored(metric)
        if rec is None or t.gmacs is None:
            continue
        pts.append(
            DesignPoint(
                trial=t.number,
                name=t.name,
                preset=t.preset,
                gmacs=t.gmacs,
                params=t.params,
                alignment=rec.score(metric),
                alignment_se=rec.score_se(metric),
                rung=rec.rung,
                top_rung=t.top_rung and rec.rung == t.rung,
                on_front=False,
                spec_text=spec_text(t.spec),
                alignment_by_steps=rec.alignment_by_steps,
            )
        )
    top = [i for i, p in enumerate(pts) if p.top_rung]
    vectors = [_minimise(pts[i], objectives) for i in top]
    front = {top[j] for j in pareto(vectors)}
    pts = [replace(p, on_front=i in front) for i, p in enumerate(pts)]
    return sorted(pts, key=lambda p: (p.gmacs, -p.alignment))


def learning_curves(trials: Sequence[TrialRecord], metric: Metric) -> dict[str, list[Curve]]:
    """Per proxy (``val_loss`` and ``metric.field``), one curve per trial against cumulative training FLOPs.

    Validation loss comes from the intermediate values (samples -> FLOPs via ``train_flops_per_sample``) when a
    trial has them, else from its rung records."""
    out: dict[str, list[Curve]] = {"val_loss": [], metric.field: []}
    for t in trials:
        if t.val_curve and t.train_flops_per_sample:
            loss = [CurvePoint(s * t.train_flops_per_sample, v) for s, v in t.val_curve]
        else:
            loss = [CurvePoint(r.train_flops, r.val_loss) for r in t.rungs if r.val_loss is not None]
        score = [
            CurvePoint(r.train_flops, r.score(metric), r.score_se(metric))
            for r in t.rungs
            if r.score(metric) is not None
        ]
        for proxy, pts in (("val_loss", loss), (metric.field, score)):
            if pts:
                out[proxy].append(Curve(t.number, t.name, proxy, t.faded, tuple(pts)))
    return out


def compute_points(trials: Sequence[TrialRecord], metric: Metric) -> list[tuple[float, float, int]]:
    """(cumulative training FLOPs, alignment, trial) of every scored rung."""
    return [
        (r.train_flops, r.score(metric), t.number)
        for t in trials
        for r in t.rungs
        if r.score(metric) is not None and r.train_flops > 0
    ]


def upper_envelope(points: Iterable[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """The points no cheaper-or-equal point beats: the Pareto frontier of (x minimised, y maximised), by x.

    Li et al. (CVPR 2024) fit their scaling law S = a C^b on this frontier of (training compute, alignment)."""
    out: list[tuple[float, float, Any]] = []
    best = -math.inf
    for x, y, tag in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y, tag))
            best = y
    return out


def isoflop_groups(trials: Sequence[TrialRecord], proxy: str = "val_loss") -> dict[int, list[tuple[float, float]]]:
    """Per rung (candidates at one rung had one training-FLOPs horizon: an isoFLOP slice), (params, proxy) of each
    trial that finished it."""
    out: dict[int, list[tuple[float, float]]] = {}
    for t in trials:
        if not t.params:
            continue
        for r in t.rungs:
            v = r.val_loss if proxy == "val_loss" else getattr(r, proxy)
            if v is not None:
                out.setdefault(r.rung, []).append((float(t.params), float(v)))
    return out


def rung_horizons(trials: Sequence[TrialRecord]) -> dict[int, float]:
    """Median cumulative training FLOPs per candidate at each rung (the isoFLOP budget of that rung)."""
    by: dict[int, list[float]] = {}
    for t in trials:
        for r in t.rungs:
            if r.train_flops > 0:
                by.setdefault(r.rung, []).append(r.train_flops)
    return {k: sorted(v)[len(v) // 2] for k, v in sorted(by.items())}


def sampling_points(points: Sequence[DesignPoint], default_steps: int | None) -> tuple[list[SamplingPoint], bool]:
    """(points, measured_at_several_steps) for the Pareto set: alignment per DDIM step count from
    ``alignment_by_steps`` when stored, else one point per design at the recipe's ``default_steps``."""
    front = [p for p in points if p.on_front]
    several = any(len(p.alignment_by_steps) > 1 for p in front)
    out = []
    for p in front:
        if p.alignment_by_steps:
            out += [SamplingPoint(p.trial, p.name, s, p.gmacs, a) for s, a in sorted(p.alignment_by_steps.items())]
        elif default_steps:
            out.append(SamplingPoint(p.trial, p.name, default_steps, p.gmacs, p.alignment))
    return out, several


def best_at_cost(points: Sequence[SamplingPoint]) -> list[SamplingPoint]:
    """For each sampling cost reached, the best alignment at that cost or below (Mei et al.: which design is best at
    each inference budget), as the points where the leader or its score changes, by cost."""
    out: list[SamplingPoint] = []
    for p in sorted(points, key=lambda p: (p.cost, -p.alignment)):
        if not out or p.alignment > out[-1].alignment:
            out.append(p)
    return out


def best_designs(points: Sequence[DesignPoint], n: int) -> list[DesignPoint]:
    """The Pareto designs, best alignment first, at most ``n``; top-rung designs first if there are no front points."""
    front = [p for p in points if p.on_front] or [p for p in points if p.top_rung] or list(points)
    return sorted(front, key=lambda p: -p.alignment)[:n]


def param_importances(study: optuna.Study, objectives: Sequence[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """Per objective, fANOVA importance of each searched parameter (Optuna's ``FanovaImportanceEvaluator``) over
    completed trials; an objective is left out when Optuna cannot evaluate it (fewer than two completed trials, or
    no parameter varies)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    out: dict[str, dict[str, float]] = {}
    if len(done) < 2:
        return out
    for i, name in enumerate(objectives):
        try:
            evaluator = FanovaImportanceEvaluator(seed=seed)
            imp = get_param_importances(study, evaluator=evaluator, target=lambda t, i=i: t.values[i])
        except (RuntimeError, ValueError, ZeroDivisionError):
            continue
        if imp:
            out[name] = {k: float(v) for k, v in imp.items()}
    return out


# -- helpers -----------------------------------------------------------------------------------------------------
def _minimise(p: DesignPoint, objectives: Sequence[str]) -> list[float]:
    out = []
    for o in objectives:
        v = {"alignment": p.alignment, "gmacs": p.gmacs, "params": p.params}.get(o)
        v = float(v if v is not None else math.inf)
        out.append(-v if DIRECTIONS.get(o) == "maximize" else v)
    return out


def _is_rung_key(key: str) -> bool:
    return key.startswith("rung_") and key[5:].isdigit()


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)
