"""FLOPs budgets as the user writes them (``--budget 2e20``) and as tables print them."""

from __future__ import annotations

import math
import re

from unetnas.errors import UserError

# A plain decimal or scientific number, nothing else: no units, no sign other than "+", no "inf"/"nan",
# no underscores or hex (which float() or int() would otherwise accept).
_NUMBER = re.compile(r"\+?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

# SI prefixes for FLOP counts, largest first; 1e3 and up only (budgets are never below a kiloFLOP).
_PREFIXES = ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def parse_budget(text: str, *, field: str = "--budget") -> float:
    """Parse a positive, finite FLOPs count such as ``2e20``, ``200e18``, ``1.5e13`` or ``1000000``.

    Anything else (words, units, signs, zero, ``inf``, ``nan``, overflow to infinity, underflow to zero,
    an empty string) raises a one-line ``UserError`` naming ``field`` and the text.
    """
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise UserError("must be a positive number of FLOPs such as 2e20 or 1000000", field=field, value=text)
    value = float(stripped)
    if not math.isfinite(value):
        raise UserError("must be finite (the number overflows a float)", field=field, value=text)
    if value <= 0:
        raise UserError("must be greater than zero", field=field, value=text)
    return value


def format_flops(x: float, *, human: bool = False) -> str:
    """Format a FLOPs count: ``2.00e+20`` by default, ``200 EFLOP`` with ``human=True``.

    Human form keeps three significant digits (``1.50 PFLOP``, ``12.0 TFLOP``, ``200 EFLOP``); values below
    1000 print as plain ``950 FLOP``; non-finite values print as Python does (``inf``).
    """
    if not human:
        return f"{x:.2e}"
    if not math.isfinite(x):
        return f"{x} FLOP"
    magnitude = abs(x)
    for scale, prefix in _PREFIXES:
        # Round first so that 999.6e18 prints as "1.00 ZFLOP", not "1.00e+03 EFLOP".
        if float(f"{magnitude:.3g}") >= scale:
            return f"{_three_digits(x / scale)} {prefix}FLOP"
    return f"{x:.0f} FLOP"


def _three_digits(v: float) -> str:
    """Three significant digits without an exponent: 1.50, 12.0, 200."""
    v = float(f"{v:.3g}")
    a = abs(v)
    decimals = 2 if a < 10 else 1 if a < 100 else 0
    return f"{v:.{decimals}f}"
