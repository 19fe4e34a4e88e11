"""YAML in and out for specs and spaces: safe loaders, lossless round trips, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from unetnas.errors import UserError, from_validation_error
from unetnas.presets import PRESETS, get_preset
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except IsADirectoryError:
        raise UserError("is a directory, expected a YAML file", source=p) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read file ({getattr(err, 'strerror', None) or err})", source=p) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"not valid YAML{where} ({getattr(err, 'problem', None) or 'parse error'})", source=p) from None


def load_model(path: str | Path, model: type[M]) -> M:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"must be a YAML mapping of {model.__name__} fields", source=path, value=type(data).__name__)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err, source=path) from None


def save_model(obj: BaseModel, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = obj.model_dump(mode="json", exclude_none=True)
    p.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return p


def load_spec(path: str | Path) -> UNetSpec:
    return load_model(path, UNetSpec)


def load_space(path: str | Path) -> SearchSpace:
    return load_model(path, SearchSpace)


def resolve_spec(arg: str) -> UNetSpec:
    """A preset name or a spec YAML file."""
    if arg in PRESETS:
        return get_preset(arg)
    p = Path(arg)
    if p.suffix in (".yaml", ".yml", ".json") or p.exists():
        if not p.exists():
            raise UserError("no such file", source=p)
        return load_spec(p)
    return get_preset(arg)  # raises: unknown preset
