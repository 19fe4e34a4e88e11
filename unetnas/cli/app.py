"""`unetnas` entry point. Commands live in small modules beside this one and register here."""

from __future__ import annotations

import sys

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from unetnas.errors import EXIT_USAGE, UserError

app = typer.Typer(
    name="unetnas",
    help="Compute-budgeted architecture search for text-to-image diffusion UNets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: Usage / Options / Commands, no boxes, the same on a terminal and in a pipe
    context_settings={"max_content_width": 120},
)
PROG = "unetnas"
# Option value placeholders as conventional CLIs write them (click's defaults), instead of typer's <str>, <path>
METAVARS = {
    "str": "TEXT",
    "path": "PATH",
    "float": "FLOAT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float range": "FLOAT",
    "bool": "BOOLEAN",
    "datetime": "DATETIME",
}

_registered = False
_command = None


def _register() -> None:
    """Add every command module's commands and groups (``registry``) to the app, once per process."""
    global _registered
    if _registered:
        return
    _registered = True
    from unetnas.cli import data, design, proxy, results, search, trial, worker  # noqa: F401 (they record)
    from unetnas.cli.registry import COMMANDS, GROUPS

    for name, fn in COMMANDS:
        app.command(name)(fn)
    for name, sub in GROUPS:
        sub.rich_markup_mode = None  # sub-apps format their help as the main app does
        app.add_typer(sub, name=name)


def command():
    """The click command tree of the CLI, built once, with conventional option placeholders (``--out PATH``)."""
    global _command
    if _command is None:
        _register()
        _command = typer.main.get_command(app)
        _conventional_metavars(_command)
    return _command


def _conventional_metavars(cmd) -> None:  # noqa: ANN001 (a typer/click command or group)
    from typer._click import Context

    ctx = Context(cmd, info_name=PROG)
    for p in cmd.params:
        if p.param_type_name == "option" and not p.is_flag and not p.count and p.metavar is None:
            label = p.display_type(ctx).strip("<>")
            p.metavar = METAVARS.get(label, f"[{label}]" if "|" in label else label.upper())
        elif p.param_type_name == "argument" and p.metavar is None:  # `show FILE`, not typer's `show {file}`
            p.metavar = p.name.upper()
            usage = (p.metavar if p.required else f"[{p.metavar}]") + ("..." if p.nargs != 1 else "")
            p._usage_display_name = lambda usage=usage: usage
            p.display_type_rich = lambda ctx: None
    for sub in getattr(cmd, "commands", {}).values():
        _conventional_metavars(sub)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input becomes one line on stderr and exit code 2."""
    try:
        command().main(args=argv, prog_name=PROG, standalone_mode=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except (typer.Exit, typer.Abort) as err:
        sys.exit(getattr(err, "exit_code", 130))
    except Exception as err:  # usage errors (bad option values, unknown commands) arrive here
        damaged = _damaged_database(err)
        if damaged:
            print(f"error: {damaged}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        if not isinstance(err, ClickException):
            raise
        if isinstance(err, NoArgsIsHelpError):
            print(err.ctx.get_help() if err.ctx else err.format_message(), file=sys.stderr)
            sys.exit(EXIT_USAGE)
        print(f"error: {err.format_message()}".replace("\n", " "), file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _damaged_database(err: BaseException) -> str | None:
    """One line for a study database that opened but cannot be read (a truncated or corrupted SQLite file, a
    schema edited by hand): SQLAlchemy's and sqlite3's ``DatabaseError`` (not the ``OperationalError`` of an
    unreachable server, which ``storage.open_storage`` reports), naming the database last opened."""
    import sqlite3

    import sqlalchemy as sa

    from unetnas.search.storage import last_opened

    cause = err
    while cause is not None and not isinstance(cause, (sa.exc.DatabaseError, sqlite3.DatabaseError)):
        cause = cause.__cause__ or cause.__context__
    if cause is None or isinstance(cause, sa.exc.OperationalError):
        return None
    reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0][:160]
    return f"--storage={last_opened()!r}: the study database cannot be read ({reason}): damaged or edited; restore it from a copy"


if __name__ == "__main__":  # `python -m unetnas.cli.app` runs the registered app, not a second copy
    from unetnas.cli.app import main as _main

    _main()
