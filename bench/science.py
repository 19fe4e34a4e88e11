"""Do the paper's qualitative findings hold on the ground truth (Li et al., CVPR 2024, section 4)?

Contrasts are matched pairs of designs that differ in one axis only, compared at the full horizon (equal training
FLOPs) on the final corrected alignment of their seed-0 runs. With common random numbers (the same prompts and
initial noise for every design), each pair's difference has a paired standard error over prompts; across pairs,
the mean difference gets a Student-t 95% interval (the pairs' spread includes both measurement and seed noise).

- **depth vs width**: "transformer depth at low resolution buys more alignment per parameter than width".
  Depth pairs: level-1 cross-attention depth d -> d+1 at the same width and placement. Width pairs: C -> next C at
  the same depths and placement. Reported as alignment gained per million parameters added.
- **placement**: "cross-attention at the full-resolution level buys little". Pairs: level 0 without -> with one
  cross-attention block, all else equal; against pairs that add cross-attention at the 2x level instead
  (level 1 none -> cross-1, mid block kept).

    python -m bench science [--table bench/data/gt-tiny-v1.json] [--json]

A v2 table (``meta.horizon_unit: samples``) is compared at equal training samples, Li et al.'s protocol: each
design's seed mean at ``--samples`` (default: the deepest checkpoint every design has scored in all its seeds;
``table_stats.load_at_samples``), so the contrasts above are read at equal steps x batch instead of equal FLOPs.

    python -m bench science --table bench/data/gt-tiny-plus-v2-pilot.json [--samples 4096]
"""

from __future__ import annotations

import json
from typing import Any

from bench.cli import Parser
from bench.table_stats import DEFAULT_TABLE, Design, load, load_at_samples, mean_ci
from unetnas.proxies.alignment import paired_difference


def _key(spec: dict[str, Any], drop: str) -> tuple:
    s = {k: v for k, v in spec.items() if k != "name"}
    if drop == "depth":
        s["transformer_depth"] = (s["transformer_depth"][0],)
        s["mid_depth"] = None
    elif drop == "width":
        s["base_channels"] = None
    elif drop == "level0":
        s["attention"], s["transformer_depth"] = s["attention"][1:], s["transformer_depth"][1:]
    elif drop == "level1":
        s["attention"], s["transformer_depth"] = s["attention"][:1], s["transformer_depth"][:1]
        s["mid_attention"], s["mid_depth"] = None, None
    return tuple(sorted((k, json.dumps(v)) for k, v in s.items()))


def _pair(a: Design, b: Design) -> dict[str, Any]:
    fa, fb = a.final(0), b.final(0)
    diff, se = paired_difference(fb["per_prompt_alignment"], fa["per_prompt_alignment"])
    dp = (b.params - a.params) / 1e6
    return {
        "from": a.id,
        "to": b.id,
        "d_alignment": round(diff, 5),
        "se": round(se, 5),
        "d_params_m": round(dp, 4),
        "d_gmacs": round(b.gmacs - a.gmacs, 5),
        "per_m_params": round(diff / dp, 5) if dp else None,
    }


def _pairs(designs: list[Design], drop: str, order, step) -> list[dict[str, Any]]:
    """Pairs of designs equal up to the ``drop`` axis, whose ``order`` values differ by one ``step``."""
    groups: dict[tuple, list[Design]] = {}
    for d in designs:
        groups.setdefault(_key(d.spec, drop), []).append(d)
    out = []
    for group in groups.values():
        group.sort(key=order)
        for a, b in zip(group, group[1:]):
            if step(a, b):
                out.append(_pair(a, b))
    return out


def science(path=DEFAULT_TABLE, samples: float | None = None) -> dict[str, Any]:
    """The contrasts of the module docstring; a v2 table is read at equal samples (``samples``, see there)."""
    raw_meta = json.loads(open(path).read()).get("meta", {})
    if raw_meta.get("horizon_unit") == "samples":
        meta, by_id, samples = load_at_samples(path, samples)
    else:
        meta, by_id = load(path)
    reading = [d for d in by_id.values() if not d.text_blind]
    l1 = lambda d: d.spec["transformer_depth"][1] if d.spec["attention"][1] == "cross" else -1  # noqa: E731
    depth = _pairs(reading, "depth", l1, lambda a, b: l1(a) >= 1 and l1(b) == l1(a) + 1)
    width = _pairs(reading, "width", lambda d: d.spec["base_channels"], lambda a, b: True)
    l0 = lambda d: d.spec["transformer_depth"][0]  # noqa: E731
    level0 = _pairs(reading, "level0", l0, lambda a, b: l0(a) == 0 and l0(b) == 1)
    level1 = [
        p
        for p in _pairs(reading, "level1", l1, lambda a, b: l1(a) == -1 and l1(b) == 1)
        if by_id[p["from"]].spec["mid_attention"] == "cross"
    ]

    def summary(pairs: list[dict[str, Any]], field: str) -> dict[str, Any]:
        vals = [p[field] for p in pairs if p[field] is not None]
        return {**mean_ci(vals), "pairs": pairs}

    dw = summary(depth, "per_m_params"), summary(width, "per_m_params")
    p0, p1 = summary(level0, "d_alignment"), summary(level1, "d_alignment")
    blind = [d for d in by_id.values() if d.text_blind]
    best = max(reading, key=lambda d: d.final(0)["alignment"])
    return {
        "table": str(path),
        "designs": len(by_id),
        "horizon_flops": best.final(0)["train_flops"],
        "equal": "samples" if samples is not None else "training FLOPs",
        "samples": samples,
        "best": {
            "id": best.id,
            "alignment": best.final(0)["alignment"],
            "se": best.final(0)["alignment_se"],
            "gmacs": best.gmacs,
            "params": best.params,
        },
        "text_blind": [
            {
                "id": d.id,
                "alignment": d.final(0)["alignment"],
                "se": d.final(0)["alignment_se"],
                "tifa": d.final(0)["tifa"],
            }
            for d in blind
        ],
        "depth_vs_width": {
            "claim": "transformer depth at low resolution buys more alignment per parameter than width",
            "depth_per_m_params": dw[0],
            "width_per_m_params": dw[1],
            "holds": _holds(dw[0], dw[1]),
        },
        "placement": {
            "claim": "cross-attention at the full-resolution level buys little",
            "add_cross_at_level0": p0,
            "add_cross_at_level1": p1,
            "holds": _holds(p1, p0),
        },
    }


def _holds(bigger: dict[str, Any], smaller: dict[str, Any]) -> str:
    """'yes' if bigger's interval lies above smaller's mean and vice versa; 'no' if reversed; else 'unresolved'."""
    if not bigger["n"] or not smaller["n"] or bigger["n"] < 2 or smaller["n"] < 2:
        return "unresolved (too few pairs)"
    if bigger["ci"][0] > smaller["ci"][1]:
        return "yes"
    if bigger["ci"][1] < smaller["ci"][0]:
        return "no (reversed)"
    return "unresolved (intervals overlap)"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench science", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--samples", type=float, default=None, help="v2 tables: compare at this many samples")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = science(args.table, args.samples)
    if args.json:
        print(json.dumps(res))
        return 0
    b = res["best"]
    at = (
        f"{res['samples']:,.0f} samples each (seed means)"
        if res["samples"]
        else f"{res['horizon_flops']:.3g} training FLOPs"
    )
    print(
        f"{res['designs']} designs at {at}; best {b['id']}: alignment "
        f"{b['alignment']:+.3f} +- {b['se']:.3f} ({b['gmacs']:.3g} GMACs)"
    )
    for t in res["text_blind"]:
        print(
            f"text-blind control {t['id']}: alignment {t['alignment']:+.3f} +- {t['se']:.3f} (raw TIFA {t['tifa']:.3f})"
        )
    for name, c, (x, y) in (
        ("depth vs width", res["depth_vs_width"], ("depth_per_m_params", "width_per_m_params")),
        ("placement", res["placement"], ("add_cross_at_level1", "add_cross_at_level0")),
    ):
        print(f"\n{name}: {c['claim']} -> {c['holds']}")
        for k in (x, y):
            s = c[k]
            print(f"  {k}: {s['mean']:+.4f} [{s['ci'][0]:+.4f}, {s['ci'][1]:+.4f}] over {s['n']} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
