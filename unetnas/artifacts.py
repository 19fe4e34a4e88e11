"""Reading back what the product wrote: trial state, checkpoint weights and optimizer state, metrics logs.

Every reader here validates what it reads and raises a one-line ``UserError`` naming the file and what is wrong
(missing, unreadable, truncated, not JSON, a key given twice, a field missing or of the wrong type, numbers that
contradict each other, or a file of another kind or another design). None of them writes or removes anything, so a
refused file leaves every stored file as it was. Writers live beside their data (``train.checkpoint.save``,
``Trainer.log``); configs a person writes are read by ``unetnas.io``.

Files (a trial folder, see ``unetnas trial``):

* ``checkpoint/state.json``: ``TrialState``;
* ``checkpoint/model.safetensors``: the UNet's tensors (fp32), names and shapes those ``build_unet(spec)`` makes;
* ``checkpoint/optimizer-rank{R}.pt``: rank R's optimizer state (``torch.load(weights_only=True)``);
* ``metrics.jsonl``: one JSON object a line, ``kind`` "train" (step, samples, train_flops, loss, lr,
  samples_per_s) or "val" (step, train_flops, val_loss).

An exported design (``unetnas export``, one folder per Pareto design): ``spec.yaml``, ``config.json`` (diffusers),
``diffusion_pytorch_model.safetensors`` (unless exported config-only), ``metrics.json`` (``ExportMetrics``) and
``README.md``, the model card naming its study and trial; ``read_export`` reads and cross-checks them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unetnas.errors import UserError, from_validation_error
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe

STATE, WEIGHTS, METRICS = "state.json", "model.safetensors", "metrics.jsonl"


def _first_line(err: BaseException, limit: int = 100) -> str:
    """The first sentence of an error message from a library (torch's run on for lines)."""
    text = str(err).strip().splitlines()
    first = (text[0] if text else type(err).__name__).split(". ")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def read_text(path: Path, what: str) -> str:
    """The text of ``path``, a ``what`` file; a missing, unreadable or non-UTF-8 file is a ``UserError``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"missing: expected {what}", source=path) from None
    except IsADirectoryError:
        raise UserError(f"is a directory, expected {what}", source=path) from None
    except UnicodeDecodeError:
        raise UserError(f"is not text (damaged or foreign), expected {what}", source=path) from None
    except OSError as err:
        raise UserError(f"cannot read it ({err.strerror})", source=path) from None


class TrialState(BaseModel):
    """``checkpoint/state.json``: where a trial stands after its last saved step.

    Counters are consistent by construction (``Trainer.state``): one loss per step in ``history``,
    ``samples = step x recipe.batch_size`` (the batch never changes within a trial: see README "Resume rules"),
    ``train_flops = cost(spec).train_flops_per_sample x samples``. A file that breaks one of them was damaged or
    edited, and resuming from it would miscount the trial's compute, so it is refused.
    """

    model_config = ConfigDict(frozen=True, extra="allow")  # fields a later trainer adds are kept

    step: int = Field(ge=0, description="optimizer steps done")
    samples: int = Field(ge=0, description="training samples seen: step x batch_size")
    train_flops: float = Field(ge=0, description="training FLOPs spent: samples x train FLOPs per sample")
    wall_s: float = Field(ge=0, description="seconds spent in training steps")
    seed: int = Field(description="seed of weights, data order and noise")
    world_size: int = Field(ge=1, description="ranks that trained it (one optimizer file each)")
    history: list[float] = Field(description="global-batch training loss of every step")
    lr_sched: dict[str, Any] = Field(description="the LR scheduler's state_dict (its lambdas left out)")
    spec: UNetSpec
    recipe: Recipe
    data: dict[str, Any] = Field(description="the data source's description (Source.describe)")

    @model_validator(mode="after")
    def _consistent(self) -> TrialState:
        from unetnas.cost import cost

        if len(self.history) != self.step:
            raise ValueError(f"history has {len(self.history)} losses for {self.step} steps")
        if self.samples != self.step * self.recipe.batch_size:
            raise ValueError(f"samples={self.samples} is not step x batch_size = {self.step * self.recipe.batch_size}")
        want = cost(self.spec).train_flops_per_sample * self.samples
        if not math.isclose(self.train_flops, want, rel_tol=1e-9, abs_tol=1e-6):
            raise ValueError(f"train_flops={self.train_flops!r} is not samples x FLOPs per sample = {want!r}")
        return self


def read_state_json(path: Path) -> tuple[TrialState, dict[str, Any]]:
    """A checkpoint's ``state.json``, validated (``TrialState``); returns it and the raw mapping."""
    from unetnas.io import parse_json, validate_strict

    data = parse_json(read_text(path, "a trial state (JSON)"), path)
    if not isinstance(data, dict) or "step" not in data or "spec" not in data:
        raise UserError("is not a unetnas trial state (no step and spec)", source=path)
    return validate_strict(data, TrialState, path), data


def read_trial_state(ckpt: Path) -> TrialState:
    """The validated state of checkpoint folder ``ckpt`` (see ``TrialState``)."""
    return read_state_json(state_file(ckpt))[0]


def state_file(ckpt: Path) -> Path:
    """The ``state.json`` of checkpoint folder ``ckpt`` (see ``checkpoint_dir``); a folder without one is refused."""
    path = checkpoint_dir(ckpt) / STATE
    if not path.is_file():
        raise UserError(f"not a trial checkpoint (no {STATE})", source=ckpt)
    return path


def checkpoint_dir(ckpt: Path) -> Path:
    """``ckpt``, or the previous checkpoint kept as ``<ckpt>.old`` when a save was cut between its two renames
    (``train.checkpoint.save``); read-only: nothing is moved back."""
    old = ckpt.with_name(ckpt.name + ".old")
    if not ckpt.exists() and (old / STATE).is_file():
        return old
    return ckpt


def read_weights(path: Path, spec: UNetSpec | None = None) -> dict[str, Any]:
    """The tensors of a safetensors file; with ``spec``, exactly the names and shapes ``build_unet(spec)`` has."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError("missing: expected the trial's weights (safetensors)", source=path)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise UserError(f"not readable weights: damaged or not safetensors ({_first_line(err)})", source=path) from None
    if spec is not None:
        from unetnas.build import build_unet

        want = {k: tuple(v.shape) for k, v in build_unet(spec, device="meta").state_dict().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if got != want:
            bad = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
            raise UserError(f"weights of another design (e.g. {bad[0]}; {len(got)} tensors)", source=path)
    return tensors


def read_optimizer(path: Path, safe_globals: list[Any]) -> dict[str, Any]:
    """One rank's optimizer state, loaded with ``weights_only=True`` (no code runs) allowing ``safe_globals``."""
    import torch

    if not path.is_file():
        raise UserError("missing: no optimizer state for this rank (saved with another world size?)", source=path)
    try:
        with torch.serialization.safe_globals(safe_globals):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: pickle, zip and weights_only errors vary
        raise UserError(
            f"not a readable optimizer state: damaged or foreign ({_first_line(err)})", source=path
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"not an optimizer state (holds a {type(state).__name__})", source=path)
    return state


class TrainRecord(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a later trainer adds are kept

    kind: Literal["train"]
    step: int = Field(ge=1)
    samples: int = Field(ge=0)
    train_flops: float = Field(ge=0)
    loss: float
    lr: float = Field(ge=0)
    samples_per_s: float = Field(ge=0)


class ValRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: Literal["val"]
    step: int = Field(ge=0)
    train_flops: float = Field(ge=0)
    val_loss: float


RECORDS: dict[str, type[TrainRecord] | type[ValRecord]] = {"train": TrainRecord, "val": ValRecord}


def read_metrics(path: Path) -> list[TrainRecord | ValRecord]:
    """The train and val records of a trial's ``metrics.jsonl``; a cut, damaged or foreign line is refused naming
    its number."""
    from unetnas.io import parse_json

    text = read_text(path, "a trial's metrics log (JSON lines)")
    if text and not text.endswith("\n"):
        raise UserError(f"line {text.count(chr(10)) + 1} is cut short (no newline): the log was truncated", source=path)
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{i}"
        row = parse_json(line, where)
        if not isinstance(row, dict) or not isinstance(row.get("kind"), str) or not row["kind"]:
            raise UserError("is not a metrics record (a JSON object with a 'kind')", source=where)
        if row["kind"] not in RECORDS:
            continue  # a kind this version does not read (written by a later one): kept, not checked
        try:
            out.append(RECORDS[row["kind"]].model_validate(row, strict=True))
        except ValidationError as err:
            raise from_validation_error(err, source=where) from None
    return out


class Scores(BaseModel):
    """What a rung measured, as every record of it spells it (a trial's ``rung_K`` attribute, an exported design's
    ``metrics.json``, a ground-truth table's checkpoint): validation loss, raw TIFA and the text-blind-corrected
    alignment, with their standard errors (None: not measured, or one prompt)."""

    val_loss: float | None = None
    tifa: float | None = None
    tifa_se: float | None = None
    alignment: float | None = None
    alignment_se: float | None = None


class ExportMetrics(Scores):
    """``metrics.json`` of an exported design (``unetnas.export``); fields added later are kept."""

    model_config = ConfigDict(extra="allow")

    trial: int = Field(ge=0)
    rung: int | None = None
    alignment: float  # an exported design was scored
    objectives: list[str]
    values: list[float]
    gmacs: float = Field(ge=0)
    gflops: float = Field(ge=0)
    params: int = Field(ge=0)
    flops_spent: float | None = None
    rungs: dict[str, Any]
    weights: bool


@dataclass(frozen=True)
class ExportedDesign:
    """One exported design folder, read back and cross-checked."""

    folder: Path
    study: str
    spec: UNetSpec
    metrics: ExportMetrics


_CARD = re.compile(r"\(study `(?P<study>[^`]+)`, trial (?P<trial>\d+)\)")
EXPORT_WEIGHTS = "diffusion_pytorch_model.safetensors"  # diffusers' file name (unetnas.export.WEIGHTS)


def read_export(folder: Path) -> ExportedDesign:
    """Read an exported design folder: spec (strict), diffusers config equal to the spec's, metrics, card naming
    the same design and trial, and the weights' names and shapes (header only) when ``metrics.weights``."""
    from unetnas.build import to_diffusers_config
    from unetnas.io import load_spec, parse_json, validate_strict

    if not folder.is_dir():
        raise UserError("is not an exported design folder", source=folder)
    spec = load_spec(folder / "spec.yaml") if (folder / "spec.yaml").is_file() else None
    if spec is None:
        raise UserError("missing: expected the design's spec (unetnas export writes it)", source=folder / "spec.yaml")
    path = folder / "config.json"
    config = parse_json(read_text(path, "a diffusers UNet config (JSON)"), path)
    want = to_diffusers_config(spec)
    if not isinstance(config, dict) or config.get("_class_name") != want["_class_name"]:
        raise UserError("is not a UNet2DConditionModel config", source=path)
    diff = sorted(k for k in want.keys() | config.keys() if config.get(k) != want.get(k))
    if diff:
        raise UserError(f"does not describe spec.yaml's design ({len(diff)} fields differ)", source=path, field=diff[0])
    path = folder / "metrics.json"
    metrics = validate_strict(parse_json(read_text(path, "the design's metrics (JSON)"), path), ExportMetrics, path)
    path = folder / "README.md"
    card = read_text(path, "the design's model card")
    found = _CARD.search(card)
    if not card.startswith(f"# {spec.name}\n") or found is None:
        raise UserError(f"is not the model card of {spec.name!r} (no title and study line)", source=path)
    if int(found["trial"]) != metrics.trial:
        raise UserError(f"names trial {found['trial']}; metrics.json has {metrics.trial}", source=path)
    study = (metrics.model_extra or {}).get("study", found["study"])
    if study != found["study"]:
        raise UserError(f"names study {found['study']!r}; metrics.json has {study!r}", source=path)
    if metrics.weights:
        _check_header(folder / EXPORT_WEIGHTS, spec)
    return ExportedDesign(folder, found["study"], spec, metrics)


def _check_header(path: Path, spec: UNetSpec) -> None:
    """The safetensors file lists exactly the design's tensor names and shapes (its header only: no data read)."""
    from safetensors import safe_open

    from unetnas.build import build_unet

    if not path.is_file():
        raise UserError("missing: metrics.json says the design was exported with weights", source=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as err:  # safetensors' own error types for truncated or foreign files
        raise UserError(f"not readable weights: damaged or not safetensors ({_first_line(err)})", source=path) from None
    want = {k: tuple(v.shape) for k, v in build_unet(spec, device="meta").state_dict().items()}
    if got != want:
        bad = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
        raise UserError(f"weights of another design (e.g. {bad[0]})", source=path)
