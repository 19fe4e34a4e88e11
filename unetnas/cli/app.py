"""`unetnas` entry point. Commands live in small modules beside this one and register here."""

from __future__ import annotations

import sys

import typer

from unetnas.errors import EXIT_USAGE, UserError

app = typer.Typer(
    name="unetnas",
    help="Compute-budgeted architecture search for text-to-image diffusion UNets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so each module can `from unetnas.cli.app import app` without cycles.
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
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        if isinstance(err, click.ClickException):
            print(f"error: {err.format_message()}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        if isinstance(err, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
