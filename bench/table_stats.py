"""Shared reading and statistics for benchmarks on the ground-truth table (`bench/data/gt-tiny-v1.json`).

The table is loaded (and validated) by `unetnas.search.replay.GroundTruth`, the same reader the replay uses.
Statistics come from scipy: Spearman's rank correlation with a percentile bootstrap over designs, and Student-t
intervals for means of paired differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "bench" / "data" / "gt-tiny-v1.json"
V2_TABLE = ROOT / "bench" / "data" / "gt-tiny-plus-v2.json"  # equal samples, >= 2 seeds a design (held-out replay)


@dataclass
class Design:
    """One design of the table with its runs (seed -> list of checkpoint dicts, FLOPs ascending)."""

    id: str
    spec: Any
    params: float
    gmacs: float
    text_blind: bool
    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def final(self, seed: int = 0) -> dict[str, Any]:
        return self.runs[seed][-1]


def load(path: str | Path = DEFAULT_TABLE) -> tuple[dict[str, Any], dict[str, Design]]:
    """(meta, designs by id) of a table, validated by the replay's reader; designs without a seed-0 run are left
    out (a table still being written)."""
    import json

    from unetnas.search.replay import GroundTruth

    raw = json.loads(Path(path).read_text())
    if raw.get("meta", {}).get("complete", True):
        GroundTruth.load(path)  # schema check (one-line error); a table still being written lacks some runs
    designs = {
        d["id"]: Design(d["id"], d["spec"], float(d["params"]), float(d["gmacs"]), bool(d["text_blind"]))
        for d in raw["designs"]
    }
    for run in raw["runs"]:
        designs[run["design"]].runs[int(run["seed"])] = sorted(run["checkpoints"], key=lambda c: c["train_flops"])
    return raw["meta"], {k: v for k, v in sorted(designs.items()) if 0 in v.runs}


def load_at_samples(path: str | Path, samples: float | None = None) -> tuple[dict[str, Any], dict[str, Design], float]:
    """A v2 (equal-samples) table read at ``samples`` training samples: (meta, designs by id, samples), each design
    with one pseudo-run ``runs[0] = [checkpoint]`` holding its *seed mean* (the v2 truth: alignment, raw TIFA,
    per-prompt alignment averaged over the seeds scored there; ``alignment_se`` from the averaged per-prompt values),
    so the v1 analyses (``science``) read it unchanged. ``samples=None``: the deepest checkpoint that every design
    with any run there has scored in all its seeds. Designs without a scored checkpoint at ``samples`` are left
    out; complete and partial runs are read alike (a table still being written)."""
    import json

    raw = json.loads(Path(path).read_text())
    by_design: dict[str, list[list[dict[str, Any]]]] = {}
    for run in [*raw.get("runs", []), *raw.get("partial_runs", [])]:
        by_design.setdefault(run["design"], []).append(run["checkpoints"])

    def scored(cks: list[dict[str, Any]], s: float) -> dict[str, Any] | None:
        return next((c for c in cks if c.get("samples") == s and c.get("alignment") is not None), None)

    if samples is None:
        counts = sorted({c["samples"] for runs in by_design.values() for cks in runs for c in cks if "samples" in c})
        full = [s for s in counts if all(all(scored(c, s) for c in runs) for runs in by_design.values())]
        samples = full[-1] if full else counts[-1]
    designs = {}
    for d in raw["designs"]:
        cks = [c for c in (scored(r, samples) for r in by_design.get(d["id"], [])) if c is not None]
        if not cks:
            continue
        pp = np.mean([c["per_prompt_alignment"] for c in cks], axis=0)
        mean = {
            "samples": samples,
            "train_flops": cks[0]["train_flops"],
            "seeds": len(cks),
            "alignment": float(np.mean([c["alignment"] for c in cks])),
            "alignment_se": float(pp.std(ddof=1) / np.sqrt(len(pp))),
            "tifa": float(np.mean([c["tifa"] for c in cks])),
            "val_loss": float(np.mean([c["val_loss"] for c in cks])),
            "per_prompt_alignment": pp.tolist(),
        }
        des = Design(d["id"], d["spec"], float(d["params"]), float(d["gmacs"]), bool(d["text_blind"]))
        des.runs[0] = [mean]
        designs[d["id"]] = des
    return raw["meta"], dict(sorted(designs.items())), float(samples)


def spearman_ci(x, y, reps: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Spearman's rho of paired samples with a percentile bootstrap interval (resampling pairs)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = np.nanpercentile(boots, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"rho": round(rho, 4), "ci": [round(float(lo), 4), round(float(hi), 4)], "n": len(x)}


def mean_ci(values, level: float = 0.95) -> dict[str, Any]:
    """Mean, standard error and Student-t interval of independent values (e.g. one paired difference per pair)."""
    from scipy.stats import t

    v = np.asarray(values, float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    se = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = float(t.ppf((1 + level) / 2, n - 1) * se) if n > 1 else float("nan")
    return {"mean": round(mean, 5), "se": round(se, 5), "ci": [round(mean - half, 5), round(mean + half, 5)], "n": n}
