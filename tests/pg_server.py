"""A throw-away PostgreSQL server for the multi-worker tests and the reliability measurement (tests/conftest.py's
``postgres`` fixture, tests/reliability.py). Debian's binaries live in /usr/lib/postgresql/<version>/bin."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class Unavailable(RuntimeError):
    """No PostgreSQL here (binaries, a user to run them as, or the server would not start)."""


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1:``port`` (trust auth, user ``postgres``), run as the
    ``postgres`` OS user when the tests run as root. ``url(db)`` creates database ``db`` and returns its URL."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, root / "data", port
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._dbs: set[str] = set()

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.data / "log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (immediate: every connection cut, as in a crash) and start the server again."""
        self.stop("immediate")
        self.start()

    def url(self, db: str) -> str:
        import sqlalchemy as sa

        if db not in self._dbs:
            eng = sa.create_engine(
                f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres", isolation_level="AUTOCOMMIT"
            )
            with eng.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}"'))
                conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
            eng.dispose()
            self._dbs.add(db)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on the PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def private_server(port: int) -> Iterator[Postgres]:
    """Initialise and start a cluster in a fresh temporary folder; stop and remove it afterwards."""
    bindir = _postgres_bindir()
    if bindir is None:
        raise Unavailable("PostgreSQL binaries (initdb, pg_ctl) not installed")
    root_user = os.geteuid() == 0
    if root_user and (
        shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode
    ):
        raise Unavailable("running as root without a `postgres` user to run the server")
    root = Path(tempfile.mkdtemp(prefix="unetnas-pg-"))
    if root_user:
        shutil.chown(root, "postgres")
    pg = Postgres(bindir, root, port)
    try:
        pg.init()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"cannot start PostgreSQL: {getattr(err, 'stderr', b'') or err}") from None
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
