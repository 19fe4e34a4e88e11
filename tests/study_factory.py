"""A small finished search study written with Optuna's real SQLite storage and the real FLOPs ledger, shaped as
`unetnas search` stores it (settings, per-trial records, rung records, intermediate values, ledger rows).

Numbers follow known laws so fits can be checked: at rung k every candidate has C_k = 1e10 x 3^k training FLOPs;
alignment S = 0.02 C^0.08 (N / 1e5)^0.05; validation loss = 0.05 (log10 N / N_opt)^2 + 0.5 (C / 1e10)^-0.1 with
N_opt = 5 C^0.5 (Liang et al.'s isoFLOP shape, an interior optimum at every rung).
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

HORIZONS = (1e10, 3e10, 9e10)  # rung k: cumulative training FLOPs per candidate
PARAMS = (1e5, 1.5e5, 2.2e5, 3.3e5, 5e5, 7.5e5, 1.1e6, 1.7e6, 2.5e6)
LAST_RUNG = (0, 0, 0, 0, 1, 1, 2, 2, 2)  # trials 0-3 pruned at rung 0, 4-5 stopped at rung 1, 6-8 reached the top
PRESET_TRIAL = 7
STEPS = (5, 10, 20, 50)
DIST = {"base_channels": IntDistribution(8, 64), "level1": CategoricalDistribution(["none", "self:1", "cross:1"])}
BUDGET = 2e12
EVAL_FLOPS = 2e8


def alignment(n: float, c: float) -> float:
    return 0.02 * c**0.08 * (n / 1e5) ** 0.05


def val_loss(n: float, c: float) -> float:
    return 0.05 * math.log10(n / (5 * c**0.5)) ** 2 + 0.5 * (c / 1e10) ** -0.1


def make_study(root: Path, name: str = "small", samples: bool = True) -> str:
    """Write the study under ``root`` (database and trial folders); returns its storage URL."""
    from PIL import Image

    from unetnas.search.ledger import Ledger
    from unetnas.search.storage import engine_for

    url = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    study.set_user_attr(
        "unetnas_settings",
        {
            "objectives": ["alignment", "gmacs"],
            "plan": {"rungs": list(HORIZONS), "eta": 3},
            "recipe": {"sample_steps": 20},
            "space": "micro",
            "data": "shapes",
        },
    )
    engine = engine_for(url)
    ledger = Ledger(engine, name)
    ledger.create(BUDGET)
    for i, (n, last) in enumerate(zip(PARAMS, LAST_RUNG)):
        gmacs, per_sample = n / 2e6, 3 * n
        folder = root / "trials" / f"{i:04d}"
        folder.mkdir(parents=True)
        spec = {
            "name": f"{name}-t{i}",
            "base_channels": 8 + 4 * i,
            "channel_mult": [1, 2],
            "layers_per_block": [1, 1],
            "attention": ["none", "cross"],
            "transformer_depth": [0, 1 + i % 2],
            "mid_attention": "cross",
            "mid_depth": i % 2,
            "head_dim": 8,
        }
        attrs = {
            "spec": spec,
            "gmacs": gmacs,
            "params": int(n),
            "train_flops_per_sample": per_sample,
            "dir": str(folder),
            "rung": last,
            "top_rung": last == len(HORIZONS) - 1,
        }
        if i == PRESET_TRIAL:
            attrs["preset"] = "tiny"
        curve, spent, done = {}, 0.0, 0.0
        for k in range(last + 1):
            c = HORIZONS[k]
            s = alignment(n, c)
            rec = {
                "rung": k,
                "steps": int(c / per_sample / 8),
                "samples": int(c / per_sample),
                "train_flops": c,
                "val_loss": val_loss(n, c),
                "gmacs": gmacs,
                "params": int(n),
                "wall_s": 1.0 + k,
                "tifa": s + 0.2,
                "tifa_se": 0.012,
                "alignment": s,
                "alignment_se": 0.01,
            }
            if k == len(HORIZONS) - 1:
                rec["alignment_by_steps"] = {str(st): s * (1 - 0.5 / st) for st in STEPS}
            attrs[f"rung_{k}"] = rec
            curve[int(c / per_sample)] = val_loss(n, c)
            for kind, flops in (("train", c - done), ("eval", EVAL_FLOPS)):
                res = ledger.reserve(i, kind, flops, note=f"rung {k}")
                ledger.settle(res, flops)
                spent += flops
            done = c
        attrs["flops_spent"] = spent
        if last == len(HORIZONS) - 1 or last == 1:
            state, values = TrialState.COMPLETE, [attrs[f"rung_{last}"]["alignment"], gmacs]
            attrs["status"] = "complete" if last == 2 else "stopped"
        else:
            state, values = TrialState.PRUNED, None
            attrs["status"] = "pruned"
        if samples and last == len(HORIZONS) - 1:
            Image.new("RGB", (64, 32), (40 * i % 255, 120, 200)).save(folder / "samples.png")
        params = {"base_channels": spec["base_channels"], "level1": ["none", "self:1", "cross:1"][i % 3]}
        study.add_trial(
            create_trial(
                state=state,
                values=values,
                params=params,
                distributions=DIST,
                user_attrs=attrs,
                intermediate_values=curve,
            )
        )
    engine.dispose()
    return url
