"""Config files in and out (spaces, specs, recipes, layouts): a strict YAML loader, lossless round trips, one-line
errors.

Strict means what a person mistypes is refused, never guessed:

* ``StrictLoader`` is PyYAML's safe loader (no Python objects) that refuses a key given twice in one mapping
  (PyYAML keeps the last one silently), reads numbers as YAML 1.2 does (``1e-3`` and ``1.0e11`` are floats, not the
  strings PyYAML 1.1 makes of them), and leaves dates as text, so a document holds only JSON types.
* ``load_model`` validates the document the way Pydantic validates JSON in strict mode: a boolean is not an integer
  (``batch_size: true``), a float is not an integer (``batch_size: 32.5``, ``32.0``), a number is not a string; YAML
  lists still fill tuples and strings fill paths and literals, as in JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from unetnas.errors import UserError, from_validation_error
from unetnas.presets import PRESETS, get_preset
from unetnas.space import SearchSpace
from unetnas.spec import UNetSpec

M = TypeVar("M", bound=BaseModel)

_FLOAT = "tag:yaml.org,2002:float"
_DROPPED = {_FLOAT, "tag:yaml.org,2002:timestamp"}
# YAML 1.2 core schema floats (exponent sign optional, "1e-3" and "1.0e11" included), plus PyYAML's "1_000.5".
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class StrictLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses duplicate keys and reads floats as YAML 1.2 (see the module docstring)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(key, first, again)
        self.key, self.first, self.again = key, first, again


def parse_yaml(text: str, source: str | Path) -> Any:
    """The document in ``text`` (read from ``source``, named in errors) through ``StrictLoader``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except _DuplicateKey as err:
        raise UserError(
            f"key given twice (lines {err.first} and {err.again}); keep one", source=source, field=str(err.key)
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "parse error"
        raise UserError(f"not valid YAML{where} ({problem})", source=source) from None


def read_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file strictly; a missing, unreadable or malformed file is a one-line ``UserError``."""
    p = Path(path)
    try:
        text = p.read_text()
    except IsADirectoryError:
        raise UserError("is a directory, expected a YAML file", source=p) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read file ({getattr(err, 'strerror', None) or err})", source=p) from None
    return parse_yaml(text, p)


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key, 0, 0)
        out[key] = value
    return out


def parse_json(text: str, source: str | Path) -> Any:
    """The JSON document in ``text`` (read from ``source``, named in errors); a key given twice in one object is
    refused, as in YAML. Errors name the line and column (a truncated file ends "at line N column M")."""
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except _DuplicateKey as err:
        raise UserError("key given twice in one object; keep one", source=source, field=str(err.key)) from None
    except json.JSONDecodeError as err:
        raise UserError(
            f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})", source=source
        ) from None


def validate_strict(data: Any, model: type[M], source: str | Path) -> M:
    """``data`` (JSON types, as ``StrictLoader`` or ``json`` give them) as ``model``, validated as strict JSON."""
    if not isinstance(data, dict):
        raise UserError(f"must be a mapping of {model.__name__} fields", source=source, value=type(data).__name__)
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError) as err:  # a YAML tag such as !!binary or !!set: not a config value
        raise UserError(f"holds a value that is not plain data ({err})", source=source) from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as err:
        raise from_validation_error(err, source=source) from None


def load_model(path: str | Path, model: type[M]) -> M:
    """Read ``path`` with ``read_yaml`` and validate it strictly as ``model`` (see the module docstring)."""
    return validate_strict(read_yaml(path), model, path)


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
