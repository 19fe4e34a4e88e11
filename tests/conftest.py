"""Shared fixtures. Keep minimal: helpers used by several test files only."""

from __future__ import annotations

import contextlib
import io

import pytest


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``unetnas.cli.app.main(argv)`` in-process; returns (exit code, stdout, stderr).

    Exceptions other than ``SystemExit`` propagate (a traceback is a test failure, as it would be for a user).
    """
    from unetnas.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(argv) -> (code, stdout, stderr)``: the CLI in-process (session scope: usable under hypothesis)."""
    return _run_cli
