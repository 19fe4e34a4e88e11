"""User-facing errors: one line naming the file, field, value and the rule it broke.

Anything the user can get wrong (a YAML file, a flag, a directory) raises ``UserError``; the CLI prints
``error: <message>`` on one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UserError(Exception):
    """Bad input. ``str(err)`` is the whole one-line message."""

    def __init__(
        self,
        rule: str,
        *,
        source: str | Path | None = None,
        field: str | None = None,
        value: Any = ...,
    ) -> None:
        self.rule, self.source, self.field, self.value = rule, source, field, value
        parts = []
        if source is not None:
            parts.append(str(source))
        if field is not None:
            parts.append(field if value is ... else f"{field}={_short(value)}")
        elif value is not ...:
            parts.append(_short(value))
        parts.append(rule)
        super().__init__(" ".join(": ".join(parts).splitlines()))


def from_validation_error(err: Any, source: str | Path | None = None) -> UserError:
    """Turn the first problem of a pydantic ``ValidationError`` into a one-line ``UserError``."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    value = first.get("input", ...)
    if first.get("type") == "missing":
        value = ...
    msg = first.get("msg", "invalid")
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, dict):  # model-level validator: the whole mapping is not a useful "value"
        value = ...
    return UserError(msg, source=source, field=field, value=value)
