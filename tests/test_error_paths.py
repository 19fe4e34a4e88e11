"""One error path for every entry point (issue 21 item 3): every command that takes ``--storage``, on an
unreachable database, prints one ``error:`` line with the password redacted and exits 2; a standalone ``unetnas
trial`` whose loss diverges prints one line and exits non-zero, without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unetnas.cli.app import command

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-pw"
UNREACHABLE = f"postgresql+psycopg://user:{PASSWORD}@127.0.0.1:1/x"  # port 1: connection refused at once


def _storage_commands(group, prefix=()) -> list[tuple[str, ...]]:
    """Every (sub)command of the CLI that has a ``--storage`` option, as its argv prefix."""
    out = []
    for name, cmd in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        if getattr(cmd, "commands", None):
            out += _storage_commands(cmd, path)
        elif any("--storage" in getattr(p, "opts", ()) for p in cmd.params):
            out.append(path)
    return out


# what each command needs besides --storage/--study to reach the database (a budget the tiny space can use)
EXTRA = {
    ("search",): ["--budget", "1e14"],
    ("study", "create"): ["--budget", "1e14"],
    ("export",): ["--out", "{tmp}/out"],
    ("report",): ["--out", "{tmp}/r.html"],
    ("dashboard",): ["--port", "18931"],
}


def test_the_storage_commands_are_all_covered() -> None:
    found = set(_storage_commands(command()))
    assert found >= {("search",), ("worker",), ("study", "create"), ("ledger",), ("export",), ("report",)}
    assert found <= {*EXTRA, ("worker",), ("ledger",), ("fit",)}, found - {*EXTRA, ("worker",), ("ledger",), ("fit",)}


@pytest.mark.parametrize("argv", _storage_commands(command()), ids=" ".join)
def test_unreachable_storage_is_one_line_exit_2_without_the_password(argv, run_cli, tmp_path) -> None:
    extra = [a.format(tmp=tmp_path) for a in EXTRA.get(argv, [])]
    code, out, err = run_cli([*argv, "--storage", UNREACHABLE, "--study", "s", *extra])
    assert code == 2 and "Traceback" not in out + err, (code, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: --storage="), err
    assert "user:***@127.0.0.1:1" in err and "cannot open study storage" in err, err
    assert PASSWORD not in out + err
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.html").exists()


def test_a_diverged_standalone_trial_is_one_line(run_cli, tmp_path) -> None:
    recipe = {
        "lr": 1.0e8,  # diverges within a few steps
        "grad_clip": 1.0e12,
        "batch_size": 4,
        "micro_batch": 4,
        "val_samples": 4,
        "val_timesteps": [500],
        "world_pool": 64,
        "log_every": 1,
        "deepspeed": str(ROOT / "trials" / "deepspeed" / "cpu.json"),
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    argv = ["trial", "tiny", "--steps", "8", "--recipe", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "t")]
    code, out, err = run_cli([*argv, "--json"])
    assert code != 0 and "Traceback" not in out + err, (code, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "lr=100000000.0: training diverged (non-finite training loss" in errors[0], err
    assert errors[0] == err.strip().splitlines()[-1]


@pytest.mark.parametrize("damage", ["truncated", "cut_at_40000", "overwritten_pages"])
def test_a_damaged_study_database_is_one_line(run_cli, tmp_path, damage) -> None:
    """A study database cut short or with a page overwritten (a disk or copy fault): every reader says so in one
    line naming the database, exit 2, and leaves the file as it was."""
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    gt = str(ROOT / "bench" / "data" / "gt-tiny-v1.json")
    search = ["search", "--replay", gt, "--budget", "3e13", "--storage", url, "--study", "s", "--json"]
    code, _, err = run_cli(search)
    assert code == 0, err[-2000:]
    data = db.read_bytes()
    assert len(data) > 3 * 4096
    if damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif damage == "cut_at_40000":  # the tester's input: `truncate -s 40000`
        db.write_bytes(data[:40000])
    else:
        db.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # the header intact, every page after it not
    before = db.read_bytes()
    for argv in (["ledger", "--storage", url, "--study", "s", "--json"], search):
        code, out, err = run_cli(argv)
        assert code == 2 and "Traceback" not in out + err, err[-2000:]
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --storage='sqlite:///"), err
        assert "cannot be read" in lines[0] or "malformed" in lines[0], err
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("actual = 'abc'", "spent 'abc' FLOPs"),
        ("actual = -1e13", "spent -10000000000000.0 FLOPs"),
        ("status = 'bogus'", "of status 'bogus'"),
        ("reserved = 1e999", "a reservation of inf FLOPs"),
    ],
    ids=["text", "negative", "status", "infinite"],
)
def test_a_ledger_row_edited_outside_unetnas_is_one_line(run_cli, tmp_path, edit, named) -> None:
    import sqlite3

    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    gt = str(ROOT / "bench" / "data" / "gt-tiny-v1.json")
    code, _, err = run_cli(["search", "--replay", gt, "--budget", "3e13", "--storage", url, "--study", "s", "--json"])
    assert code == 0, err[-2000:]
    con = sqlite3.connect(db)
    with con:
        con.execute(f"UPDATE unetnas_reservation SET {edit} WHERE id = (SELECT MAX(id) FROM unetnas_reservation)")
    con.close()
    before = db.read_bytes()
    code, out, err = run_cli(["ledger", "--storage", url, "--study", "s", "--json"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --storage="), err[-2000:]
    assert named in lines[0] and "edited or damaged outside unetnas" in lines[0], lines[0]
    assert db.read_bytes() == before
