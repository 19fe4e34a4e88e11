"""Shared fixtures. Keep minimal: helpers used by several test files only."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

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


# -- headless Chromium (report and dashboard pages) --------------------------------------------------------------
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=8000",
)


class Browser:
    """Headless Chromium from the command line: a page's screenshot, or its DOM after scripts ran."""

    def __init__(self, exe: str, tmp: Path) -> None:
        self.exe, self.tmp = exe, tmp

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(dir=self.tmp)
        cmd = [self.exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def screenshot(self, url: str, out: Path) -> bytes:
        self._run(f"--screenshot={out}", url)
        return out.read_bytes()

    def dom(self, url: str) -> str:
        return self._run("--dump-dom", url).stdout


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Browser:
    """Headless Chromium; tests that use it skip when it is not installed (`apt-get install -y chromium`)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed")
    return Browser(exe, tmp_path_factory.mktemp("chromium"))


def distinct_colours(png: bytes) -> int:
    """How many colours a screenshot holds: a blank page has one or two, drawn plots hundreds."""
    from PIL import Image

    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20) or [])


@pytest.fixture(scope="session")
def count_colours():
    return distinct_colours


@pytest.fixture(scope="session")
def free_port():
    """``free_port() -> int``: a TCP port on 127.0.0.1 that was free a moment ago."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick
