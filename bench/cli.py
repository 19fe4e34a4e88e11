"""The benchmarks' argument parser: bad command-line input is one line on stderr and exit status 2, never
argparse's usage block first (the project's rule for bad input; ``--help`` still prints the usage)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``<prog>: error: <message>``."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
