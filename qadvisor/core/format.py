"""How numbers are written, the same in the CLI, the report and the TUI."""

from __future__ import annotations


def mib(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f}"


def gib(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**30:.1f} GiB"


def num(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def signed_pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:+.{digits}f}%"


def sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e}" if 0 < abs(x) < 1e-3 else f"{x:.4f}"


def pm(value: float | None, spread: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f} ±{spread / 2:,.{digits}f}" if spread is not None else f"{value:,.{digits}f}"


def pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"
