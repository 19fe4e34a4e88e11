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


# -- shared checks -----------------------------------------------------------------------------------------------
def _assert_one_line_error(code: int, out: str, err: str, *needles: str, quiet: bool = False) -> str:
    """Bad input as the house rule wants it: exit 2, no traceback, exactly one stderr line ``error: ...`` holding
    every needle (and nothing on stdout when ``quiet``). Returns the line."""
    assert code == 2, f"exit {code}, stderr: {err!r}"
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one stderr line, got {lines!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert not quiet or out == "", f"stdout: {out!r}"
    return line


@pytest.fixture(scope="session")
def assert_one_line_error():
    """``assert_one_line_error(code, out, err, *needles, quiet=False) -> line`` (see ``_assert_one_line_error``)."""
    return _assert_one_line_error


def _db_bytes(db: Path) -> bytes:
    """The SQLite file after folding its write-ahead log in: equal bytes = nothing was written."""
    import gc
    import sqlite3

    gc.collect()  # close pooled connections left by in-process runs
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return db.read_bytes()


@pytest.fixture(scope="session")
def db_bytes():
    """``db_bytes(path) -> bytes``: an SQLite database's content, write-ahead log included."""
    return _db_bytes


# -- a trained micro trial on the built-in world -----------------------------------------------------------------
@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    """A micro UNet (tests/data/micro.yaml, cross-attention at the last level) trained 3 steps on the built-in world
    at 16 px with the smoke recipe: {"root", "trial" (its folder), "source" (the WorldSource), "spec", "recipe"}.
    Read it, never write into it: several modules share it."""
    from unetnas.io import load_space
    from unetnas.train.recipe import load_recipe
    from unetnas.train.source import WorldSource
    from unetnas.train.trial import run_trial

    data = Path(__file__).parent / "data"
    recipe = load_recipe(data / "smoke.yaml")
    spec = next(s for s in load_space(data / "micro.yaml").enumerate() if s.attention[-1] == "cross")
    root = tmp_path_factory.mktemp("world")
    source = WorldSource(pool=recipe.world_pool, resolution=spec.resolution, text_len=spec.text_len)
    run_trial(spec, recipe, source, root / "trial", steps=3)
    return {"root": root, "trial": root / "trial", "source": source, "spec": spec, "recipe": recipe}


# -- a private PostgreSQL server (multi-worker tests; tests/pg_server.py) ---------------------------------------
@pytest.fixture(scope="session")
def postgres(free_port):
    """A private PostgreSQL server for the session (skips without the binaries: `apt-get install postgresql`, or
    without psycopg)."""
    pytest.importorskip("psycopg")
    from pg_server import Unavailable, private_server

    try:
        with private_server(free_port()) as pg:
            yield pg
    except Unavailable as why:
        pytest.skip(str(why))
