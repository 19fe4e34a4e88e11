"""Where a study lives: resolve, redact, open and check storage URLs.

One database holds both the Optuna study (Optuna's own tables) and the FLOPs ledger (``unetnas_*`` tables,
see ``ledger.py``). SQLite is the default (one file per study under ``runs/<study>/study.db``), opened in
WAL mode with a busy timeout so a few worker processes on one machine can share it; PostgreSQL
(``postgresql+psycopg://...``) is for many workers or several machines. SQLite files on network filesystems
(NFS) do not lock reliably: use PostgreSQL there.

Every URL that reaches a log line or an error goes through ``redact`` first.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
import re
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy import event

from unetnas.errors import UserError
from unetnas.search import retry

FIELD = "--storage"
SQLITE_TIMEOUT_S = 30.0  # how long a writer waits for the SQLite lock before "database is locked"
PG_CONNECT_TIMEOUT_S = 10  # fail fast on an unreachable server instead of the OS default (minutes)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BEGIN_OPTION = "unetnas_sqlite_begin"
_PG_CREATE_KEY = 0x756E65746E6174  # session advisory lock id held while Optuna's tables and the study are created


def resolve_storage(url: str | None, study: str, runs_dir: str | Path = "runs") -> str:
    """Return the storage URL to use: ``url`` as given, or ``sqlite:///<runs_dir>/<study>/study.db``.

    The default path is made absolute (workers started from another directory find the same file) and
    its folder is created. ``study`` must then be usable as a folder name.
    """
    if url is not None:
        if not url.strip():
            raise UserError("must be a database URL such as sqlite:///runs/s/study.db", field=FIELD, value=url)
        return url.strip()
    if not study or study in {".", ".."} or any(c in study for c in "/\\\0"):
        raise UserError("must be usable as a folder name (no '/', '\\', '.', '..')", field="--study", value=study)
    folder = Path(runs_dir).resolve() / study
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create the study folder ({err.strerror})", field="runs_dir", value=str(folder)
        ) from None
    return f"sqlite:///{folder / 'study.db'}"


def redact(url: str) -> str:
    """Hide the password of a URL: ``postgresql+psycopg://user:***@host/db``.

    Works on strings SQLAlchemy cannot parse too, and on passwords holding ``@`` or ``/``; a
    ``password=`` query parameter is hidden as well.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        authority_end = rest.find("?") if "?" in rest else len(rest)
        at = rest.rfind("@", 0, authority_end)
        if at >= 0 and ":" in rest[:at]:
            user = rest[: rest.index(":")]
            rest = f"{user}:***{rest[at:]}"
        url = f"{scheme}://{rest}"
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


_OPENED: list[str] = []  # redacted URLs of the databases this process opened, for error messages


def last_opened() -> str:
    """The (redacted) URL of the database this process opened last, or "?"."""
    return _OPENED[-1] if _OPENED else "?"


def engine_for(url: str) -> sa.Engine:
    """A SQLAlchemy engine on the study's database, for the ledger tables.

    On SQLite every connection gets ``busy_timeout`` and WAL mode, and transactions are begun by us so that
    ``writer(engine)`` can take the write lock at ``BEGIN IMMEDIATE``. On PostgreSQL the engine pings stale
    pooled connections and gives up connecting after ``PG_CONNECT_TIMEOUT_S``; a server engine connects once here, so
    an unreachable server (or wrong password) is the same one-line ``UserError`` as ``open_storage``'s, on every
    command, before anything is stored. Build one engine per process (never share one across ``fork``).
    """
    parsed = _parse(url)
    _OPENED.append(redact(url))
    try:
        if parsed.get_backend_name() == "sqlite":
            _sqlite_path(url, parsed)  # refuse in-memory databases
            engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_TIMEOUT_S})
            _install_sqlite_hooks(engine)
            return engine
        engine = sa.create_engine(parsed, **_server_kwargs(parsed))
        # first contact: fail in one line now, not in a traceback later; a server restarting as this process starts
        # (a worker launched during a failover) is tried again for retry.FIRST_CONTACT_S
        _first_contact(lambda: engine.connect().close())
        return engine
    except (sa.exc.SQLAlchemyError, ImportError) as err:
        raise _open_error(url, err) from err


def memory_engine() -> sa.Engine:
    """An engine on a private in-memory SQLite database (one connection, this process only): for the ledger of a
    replayed search that no other worker shares and nothing needs to survive (``replay.replay_search``)."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False})
    _install_sqlite_hooks(engine)
    return engine


def writer(engine: sa.Engine) -> sa.Engine:
    """The same engine, but its SQLite transactions start with ``BEGIN IMMEDIATE`` (take the write lock).

    Other databases are unchanged: serialise there with ``SELECT ... FOR UPDATE``.
    """
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int = 180,
    max_retry: int | None = 1,
) -> optuna.storages.RDBStorage:
    """Open (creating if needed) the Optuna storage at ``url``, with stale-trial detection.

    Trials whose worker stops heartbeating for ``grace_period`` seconds are failed and re-queued up to
    ``max_retry`` times (``heartbeat_interval=None``: no heartbeats; Optuna beats only inside
    ``Study.optimize`` and warns on ``ask`` otherwise). Any failure (unknown scheme, missing driver,
    unreachable server, a SQLite path in a missing or read-only folder, a file that is not a database, an
    SQLite database of another program, an incompatible Optuna schema) raises a one-line ``UserError`` with
    the redacted URL; a SQLite file this call created is removed again on failure.
    """
    if (heartbeat_interval is not None and heartbeat_interval <= 0) or grace_period <= 0:
        raise ValueError("heartbeat_interval and grace_period must be positive")
    parsed = _parse(url)
    _OPENED.append(redact(url))
    sqlite_path = _check_sqlite_target(url, parsed) if parsed.get_backend_name() == "sqlite" else None
    created = sqlite_path is not None and not sqlite_path.exists()
    try:
        if sqlite_path is not None:
            _prepare_sqlite(sqlite_path)
            engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        else:
            engine_kwargs = _server_kwargs(parsed)
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since v2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat = _heartbeat_kwargs(heartbeat_interval, grace_period, max_retry)
            if sqlite_path is not None:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            return _first_contact(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat))
    except (sa.exc.SQLAlchemyError, ImportError, RuntimeError, ValueError, OSError, sqlite3.Error) as err:
        if created and sqlite_path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        raise _open_error(url, err) from err


# --- helpers -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold a lock across processes (and machines, on PostgreSQL) while the storage's tables and the study are
    created: two workers creating them at once race ("table studies already exists", ``CREATE TYPE`` unique
    violations). SQLite: ``flock`` on ``<file>.lock`` beside the database; PostgreSQL: a session advisory lock.
    Both vanish with the process that holds them, so a killed worker never leaves one behind."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(url, parsed)
        if not path.parent.is_dir():
            yield  # open_storage reports the missing folder
            return
        with open(f"{path}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if parsed.get_backend_name() != "postgresql":
        yield
        return
    engine = engine_for(url)
    try:
        from unetnas.search.retry import call

        conn = call(engine.connect)
    except sa.exc.SQLAlchemyError as err:
        raise _open_error(url, err) from err
    try:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_CREATE_KEY})
        conn.commit()
        yield
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_CREATE_KEY})
            conn.commit()
        conn.close()
        engine.dispose()


def _heartbeat_kwargs(interval: int | None, grace_period: int, max_retry: int | None) -> dict[str, Any]:
    if interval is None:
        return {}
    # Renamed in Optuna 5 (class and argument); pyproject still allows Optuna 4.
    callback_cls = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    arg = "heartbeat_stale_trial_callback"
    arg = arg if arg in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback"
    return {"heartbeat_interval": interval, "grace_period": grace_period, arg: callback_cls(max_retry=max_retry)}


def _parse(url: str) -> sa.URL:
    scheme, sep, rest = url.partition("://")
    if sep and not scheme.startswith("sqlite") and rest.split("?")[0].count("@") > 1:
        raise UserError("write '@' inside a user name or password as %40", field=FIELD, value=redact(url))
    try:
        parsed = sa.make_url(url)
        parsed.get_dialect()  # unknown scheme -> NoSuchModuleError
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as err:
        raise _open_error(url, err) from err
    return parsed


def _sqlite_path(url: str, parsed: sa.URL) -> Path:
    database = parsed.database or ""
    if database in {"", ":memory:"} or database.startswith("file:"):
        raise UserError(
            "SQLite storage must be a file path (sqlite:///path/study.db): an in-memory database cannot be "
            "shared by workers or survive a crash",
            field=FIELD,
            value=redact(url),
        )
    return Path(database)


def _check_sqlite_target(url: str, parsed: sa.URL) -> Path:
    """Refuse SQLite targets that cannot hold a study, before anything is written."""
    path = _sqlite_path(url, parsed)

    def fail(rule: str) -> UserError:
        return UserError(f"cannot open study storage: {rule}", field=FIELD, value=redact(url))

    if path.is_dir():
        raise fail(f"{path} is a directory")
    if not path.parent.is_dir():
        raise fail(f"folder {path.parent} does not exist")
    if not path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise fail(f"folder {path.parent} is not writable")
        return path
    if not os.access(path, os.R_OK | os.W_OK):
        raise fail(f"{path} is not readable and writable")
    with path.open("rb") as fh:
        head = fh.read(len(_SQLITE_MAGIC))
    if head and head != _SQLITE_MAGIC:
        raise fail(f"{path} is not an SQLite database")
    if head:
        tables = _sqlite_tables(path)
        if tables and "studies" not in tables:
            raise fail(f"{path} is an SQLite database without Optuna tables (another program's?)")
    return path


def _sqlite_tables(path: Path) -> set[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def _prepare_sqlite(path: Path) -> None:
    """Create the file if needed and switch it to WAL (persistent in the file, so Optuna's connections too)."""
    con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _server_kwargs(parsed: sa.URL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return kwargs


def _first_contact(fn: Any) -> Any:
    """``fn()``, tried again silently on transient errors (``retry.transient``: a server restarting as this process
    starts, e.g. a worker launched during a failover) for ``retry.FIRST_CONTACT_S`` whatever this process reached
    before, then the last error: an unreachable URL fails in seconds with one line (``_open_error``)."""
    import time

    t0, wait = time.monotonic(), retry.FIRST_WAIT_S
    while True:
        try:
            return fn()
        except Exception as err:
            if not retry.transient(err) or time.monotonic() - t0 + wait > retry.FIRST_CONTACT_S:
                raise
            time.sleep(wait)
            wait *= 2


def _open_error(url: str, err: BaseException) -> UserError:
    """One line: the redacted URL and the first line of the underlying reason, password scrubbed."""
    if isinstance(err, ImportError) and err.__cause__ is not None:  # Optuna wraps the driver's ImportError
        err = err.__cause__
    reason = str(getattr(err, "orig", None) or err).strip().splitlines() or [type(err).__name__]
    text = re.sub(r"\s*\(Background on this error.*$", "", reason[0])
    try:
        password = sa.make_url(url).password
    except Exception:  # unparsable URL: nothing to scrub beyond redact()
        password = None
    if password and len(str(password)) >= 4:  # a driver rarely echoes it; short ones would mangle the text
        text = text.replace(str(password), "***")
    return UserError(f"cannot open study storage: {text or type(err).__name__}", field=FIELD, value=redact(url))


def existing_storage(url: str | None, study: str, runs_dir: str | Path = "runs") -> str:
    """Like ``resolve_storage`` for commands that read a study: a missing SQLite file is an error, never created."""
    if url is None:
        path = Path(runs_dir).resolve() / study / "study.db"
        if not path.is_file():
            raise UserError(
                f"no study database at {path}; pass --storage or run the search first", field="--study", value=study
            )
        return f"sqlite:///{path}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError("no such SQLite file", field="--storage", value=redact(url))
    return url
