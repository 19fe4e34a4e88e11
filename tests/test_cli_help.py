"""`--help` reads like a conventional CLI: plain Usage / Options / Commands sections, no boxes or markup,
click-style placeholders (``--out PATH``, ``FILE``), the same text in a pipe as on a terminal."""

from __future__ import annotations

import re

import pytest


def _commands(run_cli, prefix: list[str]) -> list[list[str]]:
    """Every command path under ``prefix``, from the help's Commands section."""
    code, out, err = run_cli([*prefix, "--help"])
    assert code == 0, err
    section = out.split("Commands:\n", 1)
    if len(section) == 1:
        return [prefix]
    names = re.findall(r"^  (\S+)", section[1], flags=re.M)
    return [path for name in names for path in _commands(run_cli, [*prefix, name])]


def test_every_help_is_plain_and_conventional(run_cli):
    paths = _commands(run_cli, [])
    assert ["report"] in paths and ["fit"] in paths and ["space", "show"] in paths and len(paths) > 12
    for path in paths:
        code, out, err = run_cli([*path, "--help"])
        assert code == 0 and err == "", (path, err)
        assert out.startswith(f"Usage: unetnas {' '.join(path)} [OPTIONS]"), out[:100]
        assert "\nOptions:\n" in out and "--help" in out
        assert not re.search(r"[╭╮╰╯│─]|<(str|path|int|float|bool)[^>]*>|\{\w+\}|\x1b\[", out), (path, out)
        assert all(len(line) <= 120 for line in out.splitlines()), path


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["report", "--help"], ["--study TEXT", "--out PATH", "--layout PATH"]),
        (["fit", "--help"], ["--json", "--at TEXT"]),
        (["dashboard", "--help"], ["--port INTEGER", "--sync / --no-sync"]),
        (["space", "show", "--help"], ["Usage: unetnas space show [OPTIONS] FILE", "\n  FILE  "]),
    ],
)
def test_placeholders_read_like_click(run_cli, argv, needles):
    code, out, _ = run_cli(argv)
    assert code == 0
    for needle in needles:
        assert needle in out, (needle, out)


def test_top_level_help_lists_commands_with_one_line_summaries(run_cli):
    code, out, _ = run_cli(["--help"])
    assert code == 0 and out.startswith("Usage: unetnas [OPTIONS] COMMAND [ARGS]...")
    listed = re.findall(r"^  ([a-z-]+)\s{2,}\S", out.split("Commands:\n", 1)[1], flags=re.M)
    assert {"search", "report", "fit", "dashboard", "export", "ledger"} <= set(listed)
