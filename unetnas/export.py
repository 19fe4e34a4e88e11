"""Export the Pareto set of a study: one folder per design that diffusers loads directly.

Each folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``UNet2DConditionModel.from_pretrained``
reads them), the spec YAML, metrics JSON and a README model card with the design's rung and its alignment's standard
error where the trial's records have them.

An export cannot mislead: every design is checked before anything is written. A trial whose checkpoint cannot be
found (where the study recorded it, or beside the study's SQLite file when the study folder moved) is refused unless
``config_only``, which writes configs and cards that say they hold no weights; weights that do not match the design
(names, shapes) or are not all finite (a diverged trial) are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetnas.build import build_unet, save_diffusers_config
from unetnas.cost import cost
from unetnas.errors import UserError
from unetnas.io import save_model
from unetnas.search import study as S
from unetnas.spec import UNetSpec

WEIGHTS = "diffusion_pytorch_model.safetensors"  # diffusers' file name for model weights
CHECKPOINT_WEIGHTS = Path("checkpoint") / "model.safetensors"  # where a trial folder keeps its last weights
FIELD = "--study"


def load_study(storage_url: str, name: str):
    import optuna

    from unetnas.search.storage import open_storage, redact

    storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no such study in {redact(storage_url)}", field=FIELD, value=name) from None
    settings = study.user_attrs.get(S.SETTINGS_ATTR)
    if settings is None:
        raise UserError("was not made by unetnas search", field=FIELD, value=name)
    return study, tuple(settings["objectives"])


def trial_folders(trial, storage_url: str, study_name: str) -> list[Path]:
    """Where trial ``trial``'s folder may be, in order: as the study recorded it, then beside the study's SQLite
    file (``<db folder>/trials/NNNN``, or ``<db folder>/<study>/trials/NNNN`` when several studies share the file),
    so a study folder that was moved or copied elsewhere still finds its trials."""
    recorded = trial.user_attrs.get("dir")
    name = Path(recorded).name if recorded else f"{trial.number:04d}"
    out = [Path(recorded)] if recorded else []
    if storage_url.startswith("sqlite:///"):
        home = Path(storage_url.removeprefix("sqlite:///")).parent
        out += [home / "trials" / name, home / study_name / "trials" / name]
    return list(dict.fromkeys(out))


@dataclass
class _Design:
    """One Pareto design, checked: its trial, spec, cost, last rung record and weights file (None: config only)."""

    row: dict[str, Any]
    trial: Any
    spec: UNetSpec
    record: dict[str, Any]
    weights: Path | None
    flops: float | None = None  # FLOPs the search spent on the design (``design_flops``)


def _check_weights(path: Path, spec: UNetSpec, number: int) -> None:
    """The file holds exactly the design's tensors (names and shapes, as diffusers builds it), all finite."""
    import torch
    from safetensors import SafetensorError, safe_open

    want = {k: tuple(v.shape) for k, v in build_unet(spec, device="meta").state_dict().items()}
    where = f"trial {number}: {path}"
    try:
        with safe_open(str(path), framework="pt") as f:
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
            if got != want:
                bad = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
                raise UserError(
                    f"the weights do not match the trial's design (e.g. {bad[0]}); not exported", source=where
                )
            for key in f.keys():  # noqa: SIM118
                if not bool(torch.isfinite(f.get_tensor(key)).all()):
                    raise UserError(
                        f"weights are not all finite (NaN/inf in {key}); a diverged trial is not exported", source=where
                    )
    except (SafetensorError, OSError) as err:
        raise UserError(f"cannot read the weights ({str(err)[:80]}); not exported", source=where) from None


def _designs(study, objectives, storage_url: str, study_name: str, top: int | None, config_only: bool) -> list[_Design]:
    rows = S.pareto_rows(study, objectives)
    if not rows:
        raise UserError("has no completed trials yet; run (or resume) the search first", field=FIELD, value=study_name)
    out = []
    for row in rows[: top or len(rows)]:
        t = study.trials[row["trial"]]
        spec = S.spec_of(t)
        rung = row.get("rung", t.user_attrs.get("rung"))
        record = t.user_attrs.get(f"rung_{rung}", {})
        places = [d / CHECKPOINT_WEIGHTS for d in trial_folders(t, storage_url, study_name)]
        weights = next((p for p in places if p.is_file()), None)
        if weights is None and not config_only:
            seen = ", ".join(str(p) for p in places) or "no folder recorded"
            raise UserError(
                f"no checkpoint found (looked at {seen}); export refuses a design without its weights: "
                "restore the trial folders, or pass --config-only for configs and cards without weights",
                field=FIELD,
                value=f"{study_name} trial {t.number}",
            )
        if weights is not None:
            _check_weights(weights, spec, t.number)
        out.append(_Design(row, t, spec, record, None if config_only else weights))
    return out


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _alignment_line(row: dict[str, Any], record: dict[str, Any]) -> str:
    """The alignment objective, what it measures, and its standard error when the record has one."""
    if record.get("alignment") is not None:
        what, se = "text-blind-corrected TIFA", record.get("alignment_se")
    elif record.get("tifa") is not None:
        what, se = "TIFA-style", record.get("tifa_se")
    else:
        what, se = "-validation loss", None
    se = row.get("alignment_se", se) if se is None else se
    shown = f"{row['alignment']:.4f}" + (f" ± {se:.4f} (standard error)" if se is not None and se > 0 else "")
    return f"| alignment ({what}) | {shown} |"


def _latent(spec: UNetSpec) -> str:
    return f"{spec.latent_channels}x{spec.latent_size}x{spec.latent_size}"


def design_flops(trial: Any, spent: dict[int, float | None]) -> float | None:
    """FLOPs the search spent on ``trial``'s design: its own ``flops_spent``, plus the pruned trial it continues
    (a second chance: the steps before its rung were paid there; ``spent``: trial number -> ``flops_spent``)."""
    own = trial.user_attrs.get("flops_spent")
    origin = trial.user_attrs.get("continues")
    if own is None or origin is None:
        return own
    before = spent.get(origin)
    return None if before is None else own + before


def _card(d: _Design, c, study: str, n_rungs: int | None, unit: str = "flops") -> str:
    spec, row, rec = d.spec, d.row, d.record
    td = ", ".join(f"{a}:{k}" for a, k in zip(spec.attention, spec.transformer_depth))
    rung = row.get("rung", d.trial.user_attrs.get("rung"))
    if rung is None:
        rung_text = "-"
    elif n_rungs:
        rung_text = f"{rung} of rungs 0..{n_rungs - 1}" + (" (the last)" if rung == n_rungs - 1 else "")
    else:
        rung_text = str(rung)
    extra = ""
    if rec.get("alignment") is not None and rec.get("tifa") is not None:
        se = f" ± {rec['tifa_se']:.4f}" if rec.get("tifa_se") else ""
        extra += f"| raw TIFA | {_fmt(rec.get('tifa'))}{se} |\n"
    if rec.get("val_loss") is not None:
        extra += f"| validation loss | {_fmt(rec.get('val_loss'))} |\n"
    if d.trial.user_attrs.get("continues") is not None:
        extra += f"| second chance | continues pruned trial {d.trial.user_attrs['continues']} from its checkpoint |\n"
    if d.flops is not None:
        own = d.trial.user_attrs.get("flops_spent")
        split = (
            f" (this trial {own:.3g}, the pruned trial before it the rest)" if "continues" in d.trial.user_attrs else ""
        )
        extra += f"| FLOPs the search spent on it | {d.flops:.3g}{split} |\n"
    if d.weights is not None:
        use = f"""```python
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_pretrained("path/to/this/folder")
```
Weights were trained only for the search's short horizon (rung {rung_text}): they rank designs; retrain the winner at
scale."""
    else:
        use = """**Config only: this folder holds no weights** (exported with `--config-only`; the trial's checkpoint
was not exported). `from_pretrained` will not load it; build the architecture, randomly initialised, with:
```python
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config("path/to/this/folder"))
```"""
    return f"""# {spec.name}

A text-to-image diffusion UNet found by `unetnas search` (study `{study}`, trial {row["trial"]}), on the Pareto
front of alignment vs inference cost.

| | |
|---|---|
{_alignment_line(row, rec)}
{extra}| rung | {rung_text} |
| horizon unit | training {unit} |
| inference GMACs (conv + linear, {c.resolution} px, {c.text_len} tokens) | {c.gmacs:.4g} |
| forward GFLOPs (all ops) | {c.gflops:.4g} |
| parameters | {c.params:,} |
| training FLOPs | {_fmt(rec.get("train_flops"), ".3g")} ({rec.get("steps", "-")} steps) |

Design: base channels {spec.base_channels}, channel multipliers {list(spec.channel_mult)}, res blocks
{list(spec.layers_per_block)}, attention per level [{td}], mid block {spec.mid_attention}:{spec.mid_depth}, head dim
{spec.head_dim}, text {spec.cross_attention_dim}-d x {spec.text_len} tokens, latent {_latent(spec)}.

{use}
"""


MARKER = ".unetnas-export.json"  # in --out: which study the folders there came from, and their names


def folder_name(study_name: str, number: int) -> str:
    """``<study>-trial-NNNN``: the study in every design folder's name, so two studies never share one."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', study_name)}-trial-{number:04d}"


def _refuse(out: Path, rule: str) -> UserError:
    return UserError(rule, field="--out", value=str(out))


def _check_out(out: Path, study_name: str, replace: bool) -> list[str]:
    """Check ``out`` before anything is written; returns the entries of an earlier export there that this one
    replaces (its folders and marker). Refused: a file in the way, an unwritable folder, a folder holding another
    study's export (unless ``replace``) or anything an export did not write."""
    probe = out
    while not probe.exists():  # the nearest existing ancestor must be a writable folder
        if probe.parent == probe:
            break
        probe = probe.parent
    if out.exists() and not out.is_dir():
        raise _refuse(out, "a file is in the way (--out must be a folder)")
    if not probe.is_dir():
        raise _refuse(out, f"a file is in the way ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _refuse(out, f"folder {probe} is not writable")
    if probe != out:
        return []
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return []
    try:
        marker = json.loads((out / MARKER).read_text())
        theirs, folders = str(marker["study"]), [str(f) for f in marker["folders"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise _refuse(
            out,
            f"is not empty and holds no unetnas export ({entries[0]}, ...); nothing written: choose an empty folder",
        ) from None
    foreign = sorted(set(entries) - {MARKER, *folders})
    if foreign:
        raise _refuse(out, f"holds {foreign[0]}, which no export wrote; nothing written: choose an empty folder")
    blocked = [f for f in folders if f in entries and not (out / f).is_dir()]
    if blocked:
        raise _refuse(out, f"a file is in the way ({blocked[0]} should be an exported design folder)")
    if theirs != study_name and not replace:
        raise _refuse(
            out,
            f"holds the export of study {theirs!r}; nothing written: choose another folder, or pass --replace to "
            f"replace it with study {study_name!r}'s",
        )
    return [MARKER, *(f for f in folders if f in entries)]


def _write_design(
    d: _Design, folder: Path, objectives, study_name: str, n_rungs: int | None, unit: str = "flops"
) -> None:
    t, c = d.trial, cost(d.spec)
    folder.mkdir()
    save_diffusers_config(d.spec, folder)
    save_model(d.spec, folder / "spec.yaml")
    if d.weights is not None:
        shutil.copyfile(d.weights, folder / WEIGHTS)
    rung = d.row.get("rung", t.user_attrs.get("rung"))
    metrics = {
        "study": study_name,
        "trial": t.number,
        "rung": rung,
        "alignment": d.row["alignment"],
        "alignment_se": d.record.get("alignment_se", d.row.get("alignment_se")),
        "tifa": d.record.get("tifa"),
        "tifa_se": d.record.get("tifa_se"),
        "val_loss": d.record.get("val_loss"),
        "objectives": list(objectives),
        "values": list(t.values),
        "gmacs": c.gmacs,
        "gflops": c.gflops,
        "params": c.params,
        "flops_spent": t.user_attrs.get("flops_spent"),  # this trial's; a second chance: its origin's come first
        "design_flops_spent": d.flops,  # the design's: this trial's plus, for a second chance, its origin's
        "continues": t.user_attrs.get("continues"),  # the pruned trial a second chance continued (None: none)
        "rungs": {k: v for k, v in t.user_attrs.items() if k.startswith("rung_")},
        "weights": d.weights is not None,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (folder / "README.md").write_text(_card(d, c, study_name, n_rungs, unit))


def export(
    storage_url: str,
    study_name: str,
    out: str | Path,
    top: int | None = None,
    config_only: bool = False,
    replace: bool = False,
) -> list[Path]:
    """Write one folder ``<study>-trial-NNNN`` per Pareto trial (best alignment first, at most ``top``) into
    ``out``; returns the folders.

    A transaction: every design is checked (checkpoint found, weights matching and finite) and ``out`` too (a
    folder, writable, empty or holding this study's earlier export, or another study's with ``replace``) before
    anything is written; the designs are written into a hidden staging folder inside ``out`` and then renamed into
    place, the earlier export's folders moved aside and deleted only after all are in place. Any failure is a
    one-line ``UserError`` and leaves ``out`` as it was. ``config_only`` writes no weights and says so in the card.
    """
    study, objectives = load_study(storage_url, study_name)
    designs = _designs(study, objectives, storage_url, study_name, top, config_only)
    spent = {t.number: t.user_attrs.get("flops_spent") for t in study.get_trials(deepcopy=False)}
    designs = [dataclasses.replace(d, flops=design_flops(d.trial, spent)) for d in designs]
    plan = study.user_attrs.get(S.SETTINGS_ATTR, {}).get("plan", {})
    n_rungs = len(plan.get("rungs", ())) or None
    out = Path(out)
    old = _check_out(out, study_name, replace)
    names = [folder_name(study_name, d.trial.number) for d in designs]
    stage = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
        for d, name in zip(designs, names):
            _write_design(d, stage / name, objectives, study_name, n_rungs, plan.get("unit", "flops"))
        (stage / MARKER).write_text(json.dumps({"study": study_name, "folders": names}, indent=1))
        aside = stage / ".replaced"
        aside.mkdir()
        for name in old:  # rename: atomic per entry, on the same filesystem
            (out / name).rename(aside / name)
        try:
            for name in [*names, MARKER]:
                (stage / name).rename(out / name)
        except OSError:
            for name in [*names, MARKER]:  # undo: the earlier export back in place
                if (out / name).exists() and not (stage / name).exists():
                    (out / name).rename(stage / name)
            for name in old:
                (aside / name).rename(out / name)
            raise
    except OSError as err:
        raise _refuse(out, f"cannot write the export ({err.strerror or err}); nothing changed there") from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return [out / n for n in names]
