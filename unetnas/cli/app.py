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
)


_registered = False


def _register() -> None:
    # Imported here so each module can `from unetnas.cli.app import app` without cycles; once per process.
    global _registered
    if _registered:
        return
    _registered = True
    from unetnas.cli import design, proxy, results, search, trial  # noqa: F401
    from unetnas.cli.data import data_app

    app.add_typer(data_app, name="data")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input becomes one line on stderr and exit code 2."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
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
        if not isinstance(err, ClickException):
            raise
        if isinstance(err, NoArgsIsHelpError):
            print(err.ctx.get_help() if err.ctx else err.format_message(), file=sys.stderr)
            sys.exit(EXIT_USAGE)
        print(f"error: {err.format_message()}".replace("\n", " "), file=sys.stderr)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # `python -m unetnas.cli.app` runs the registered app, not a second copy
    from unetnas.cli.app import main as _main

    _main()
