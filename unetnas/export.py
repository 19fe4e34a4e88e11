"""Export the Pareto set of a study: one folder per design that diffusers loads directly.

Each folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``UNet2DConditionModel.from_pretrained``
reads them), the spec YAML, metrics JSON and a README model card.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from unetnas.build import save_diffusers_config
from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import save_model
from unetnas.search import study as S

WEIGHTS = "diffusion_pytorch_model.safetensors"  # diffusers' file name for model weights


def load_study(storage_url: str, name: str):
    import optuna

    from unetnas.search.storage import open_storage, redact

    storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no such study in {redact(storage_url)}", field="--study", value=name) from None
    settings = study.user_attrs.get(S.SETTINGS_ATTR)
    if settings is None:
        raise UserError("was not made by unetnas search", field="--study", value=name)
    return study, tuple(settings["objectives"])


def _card(row: dict[str, Any], spec, c, rec: dict[str, Any], study: str) -> str:
    td = ", ".join(f"{a}:{d}" for a, d in zip(spec.attention, spec.transformer_depth))
    return f"""# {spec.name}

A text-to-image diffusion UNet found by `unetnas search` (study `{study}`, trial {row['trial']}), on the Pareto
front of alignment vs inference cost.

| | |
|---|---|
| alignment ({'TIFA-style' if rec.get('tifa') is not None else '-validation loss'}) | {row['alignment']:.4f} |
| inference GMACs (conv + linear, {c.resolution} px, {c.text_len} tokens) | {c.gmacs:.4g} |
| forward GFLOPs (all ops) | {c.gflops:.4g} |
| parameters | {c.params:,} |
| training FLOPs | {rec.get('train_flops', 0):.3g} ({rec.get('steps')} steps) |

Design: base channels {spec.base_channels}, channel multipliers {list(spec.channel_mult)}, res blocks
{list(spec.layers_per_block)}, attention per level [{td}], mid block {spec.mid_attention}:{spec.mid_depth}, head dim
{spec.head_dim}, text {spec.cross_attention_dim}-d x {spec.text_len} tokens, latent {spec.latent_channels}x{spec.latent_size}x{spec.latent_size}.

```python
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_pretrained("path/to/this/folder")
```
Weights were trained only for the search's short horizon: they rank designs; retrain the winner at scale.
"""


def export(storage_url: str, study_name: str, out: str | Path, top: int | None = None) -> list[Path]:
    """Write one folder per Pareto trial (best alignment first, at most ``top``); returns the folders."""
    study, objectives = load_study(storage_url, study_name)
    rows = S.pareto_rows(study, objectives)
    if not rows:
        raise UserError("has no completed trials yet; run (or resume) the search first", field="--study", value=study_name)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission
        raise UserError(f"cannot create the export folder ({err.strerror})", field="--out", value=str(out)) from None
    folders = []
    for row in rows[: top or len(rows)]:
        t = study.trials[row["trial"]]
        spec = S.spec_of(t)
        c = cost(spec)
        rec = t.user_attrs.get(f"rung_{t.user_attrs['rung']}", {})
        d = out / f"trial-{row['trial']:04d}"
        d.mkdir(parents=True, exist_ok=True)
        save_diffusers_config(spec, d)
        save_model(spec, d / "spec.yaml")
        weights = Path(t.user_attrs["dir"]) / "checkpoint" / "model.safetensors"
        if weights.is_file():
            shutil.copyfile(weights, d / WEIGHTS)
        metrics = {"trial": row["trial"], "alignment": row["alignment"], "objectives": list(objectives),
                   "values": list(t.values), "gmacs": c.gmacs, "gflops": c.gflops, "params": c.params,
                   "flops_spent": t.user_attrs.get("flops_spent"), "rungs": {k: v for k, v in t.user_attrs.items()
                   if k.startswith("rung_")}, "weights": weights.is_file()}  # fmt: skip
        (d / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (d / "README.md").write_text(_card(row, spec, c, rec, study_name))
        folders.append(d)
    return folders
