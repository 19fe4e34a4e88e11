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


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread for every test: on 2 shared, loaded cores, OpenMP's spinning team of 2 runs the tiny
    models ~50x slower (bench/bench_trial.py); subprocesses inherit OMP_NUM_THREADS=1 too."""
    import os

    import torch

    saved, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(saved)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env
