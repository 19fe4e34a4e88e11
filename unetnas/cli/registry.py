"""What each command module offers the `unetnas` app: its commands and command groups, recorded here and added to
the app by ``app._register`` (imports point one way: ``app`` -> command modules -> this leaf)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

COMMANDS: list[tuple[str | None, Callable[..., Any]]] = []  # (name or None: the function's), in definition order
GROUPS: list[tuple[str, typer.Typer]] = []  # (name, sub-app)


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn`` becomes the top-level command ``name`` (default: its name, as typer spells it)."""

    def record(fn: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS.append((name, fn))
        return fn

    return record


def group(name: str, sub: typer.Typer) -> typer.Typer:
    """``sub`` becomes the command group ``name`` (``unetnas <name> ...``)."""
    GROUPS.append((name, sub))
    return sub
