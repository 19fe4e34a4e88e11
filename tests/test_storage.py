"""Storage URLs: resolving the default, redacting passwords, refusing bad targets in one line."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from unetnas.errors import UserError
from unetnas.search.budget import format_flops, parse_budget
from unetnas.search.storage import engine_for, open_storage, redact, resolve_storage, writer


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://user:hunter22@db.example:5432/nas", "postgresql+psycopg://user:***@db.example:5432/nas"),
        ("postgresql+psycopg://user:p%40ss@host/db", "postgresql+psycopg://user:***@host/db"),
        ("postgresql://user:a/b@c@host/db", "postgresql://user:***@host/db"),  # raw '/' and '@' in the password
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        (
            "postgresql://host/db?user=u&password=secret&sslmode=require",
            "postgresql://host/db?user=u&password=***&sslmode=require",
        ),
        ("sqlite:////abs/runs/s/study.db", "sqlite:////abs/runs/s/study.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_hides_passwords(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_resolve_default_is_absolute_sqlite_in_a_created_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = resolve_storage(None, "exp1")
    assert url == f"sqlite:///{tmp_path / 'runs' / 'exp1' / 'study.db'}"
    assert (tmp_path / "runs" / "exp1").is_dir()
    assert resolve_storage(" postgresql+psycopg://u@h/db ", "exp1") == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("study", ["", ".", "..", "a/b", "a\\b"])
def test_resolve_refuses_study_names_that_are_not_folders(tmp_path: Path, study: str) -> None:
    with pytest.raises(UserError, match="--study"):
        resolve_storage(None, study, runs_dir=tmp_path)


def _bad_targets(tmp_path: Path) -> dict[str, str]:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    return {
        "scheme": "nosuchdb://host/db",
        "garbage": "just some words",
        "driver": "mysql://user:hunter22@host/db",
        "missing_dir": f"sqlite:///{tmp_path / 'nope' / 'study.db'}",
        "directory": f"sqlite:///{tmp_path}",
        "not_a_db": f"sqlite:///{text}",
        "foreign_db": f"sqlite:///{other}",
        "memory": "sqlite://",
        "unreachable": "postgresql+psycopg://user:hunter22@127.0.0.1:1/db",
        "raw_at": "postgresql+psycopg://user:hun@ter22@127.0.0.1:1/db",
    }


@pytest.mark.parametrize(
    "case",
    [
        "scheme",
        "garbage",
        "driver",
        "missing_dir",
        "directory",
        "not_a_db",
        "foreign_db",
        "memory",
        "unreachable",
        "raw_at",
    ],
)
def test_bad_storage_is_one_line_user_error_and_leaves_no_garbage(tmp_path: Path, case: str) -> None:
    url = _bad_targets(tmp_path)[case]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UserError) as info:
        open_storage(url)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--storage=")
    assert "hunter22" not in message and "ter22" not in message
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing created, nothing touched


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            open_storage(f"sqlite:///{folder / 'study.db'}")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_open_storage_sets_wal_and_heartbeat(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    storage = open_storage(f"sqlite:///{db}")
    assert storage.heartbeat_interval == 60 and storage.grace_period == 180
    assert storage.heartbeat_stale_trial_callback is not None
    assert open_storage(f"sqlite:///{db}", heartbeat_interval=None).heartbeat_interval is None
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert open_storage(f"sqlite:///{db}") is not None  # reopening an existing study file is fine


def test_engine_for_sqlite_begins_immediate_only_for_writers(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    with writer(engine).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
    assert "BEGIN DEFERRED" in seen and "BEGIN IMMEDIATE" in seen
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("text", ["2e20", "200e18", "1.5e13", "1000000", " 3.5E+19 "])
def test_parse_budget_accepts_plain_numbers(text: str) -> None:
    assert parse_budget(text) == float(text)


@pytest.mark.parametrize("text", ["abc", "-1", "0", "0.0", "inf", "nan", "2e20 flops", "", "1e400", "1_000", "0x10"])
def test_parse_budget_refuses_everything_else(text: str) -> None:
    with pytest.raises(UserError) as info:
        parse_budget(text)
    assert info.value.field == "--budget" and info.value.value == text
    assert str(info.value).startswith("--budget=")


def test_format_flops() -> None:
    assert format_flops(2e20) == "2.00e+20"
    assert format_flops(2e20, human=True) == "200 EFLOP"
    assert format_flops(1.5e15, human=True) == "1.50 PFLOP"
    assert format_flops(999.7e18, human=True) == "1.00 ZFLOP"
    assert format_flops(950, human=True) == "950 FLOP"
