"""How numbers are written, the same in the CLI, the report and the TUI."""

from __future__ import annotations

import math

MIB, GIB = 2**20, 2**30  # what every MiB and GiB figure divides by


def mib(n: float | None) -> str:
    return "—" if n is None else f"{n / MIB:.1f}"


def size(n: float | None) -> str:
    """Bytes in MiB, or in GiB from 10 GiB up (a 72B is 73,673.6 MiB to nobody)."""
    if n is None:
        return "—"
    return f"{n / GIB:.1f} GiB" if n >= 10 * GIB else f"{n / MIB:.1f} MiB"


def gib(n: float | None) -> str:
    return "—" if n is None else f"{n / GIB:.1f} GiB"


def gib_figure(n: int) -> str:
    """Bytes as a bare GiB figure for a column headed in GiB: one decimal from 10 GiB, two below."""
    value = n / GIB
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _digits(x: float, digits: int) -> int:
    """At least two significant digits below 1: a 72B decoding 0.14 tok/s is not "0.1"."""
    return max(digits, 1 - math.floor(math.log10(abs(x)))) if 0 < abs(x) < 1 else digits


def num(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{_digits(x, digits)}f}"


def signed_pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:+.{digits}f}%"


def sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e}" if 0 < abs(x) < 1e-3 else f"{x:.4f}"


def pm(value: float | None, spread: float | None, digits: int = 1) -> str:
    """`12.3 ±0.4`; a figure whose spread (max − min) is wider than itself is no figure to put a ± around."""
    if value is None:
        return "—"
    digits = _digits(value, digits)
    if spread is not None and spread > value:
        return f"{value:,.{digits}f} (unreliable)"
    return f"{value:,.{digits}f} ±{spread / 2:,.{digits}f}" if spread is not None else f"{value:,.{digits}f}"


def unreliable(value: float | None, span: tuple[float, float | None] | None) -> bool:
    """A range (low, high) wider than the figure it is around, or with no upper end: the figure says little."""
    return value is not None and span is not None and (span[1] is None or span[1] - span[0] > value)


def pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"


def size_change(reduction_pct: float) -> str:
    """A size against bf16 as a change: −75% for four times smaller, +100% for fp32; never "-0%"."""
    change = round(-reduction_pct)
    return f"{change:+d}%" if change else "±0%"
