"""The hard limits, one row each: the flags, the profile file's fields, the TUI form's inputs and the advisor's checks
are all made from LIMITS, so adding a limit is one row here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field, create_model, field_validator

from qadvisor import format as f
from qadvisor.errors import UserError

SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
UNITS = {"b": 1, "kb": 1e3, "kib": 2**10, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30}


def parse_size(text: str, name: str = "max size", field: str | None = None) -> int:
    """`500MB`, `1.5GiB`, `20000000` → bytes; `name` is the field as the user sees it, for the error line, `field`
    the option it came from."""
    match = SIZE_RE.match(text)
    if not match:
        raise UserError(f"{name} {text!r}: not a size; write e.g. 500MiB, 2GB or a number of bytes", field=field)
    return int(float(match.group(1)) * UNITS[(match.group(2) or "b").lower()])


def _over(value: float, limit: float) -> float:
    return max(0.0, value / limit - 1) if limit > 0 else 0.0


@dataclass(frozen=True)
class Limit:
    """One hard limit. `shown(result, limit)` is how a miss reads: the figure, the limit and by how much."""

    option: str  # the flag (--max-size), PriorityOptions' field and the TUI form's input id
    field: str  # its field in Limits: profiles and exports
    label: str  # the form's label
    placeholder: str
    help: str  # the flag's help
    bound: dict  # the value's constraint, as pydantic's Field takes it: {"gt": 0}
    metric: Callable[[Any], float | None]  # the result's figure it bounds (None: not known)
    shown: Callable[[Any, float], str]
    miss: Callable[[float, float], float]  # how far past the limit a figure is, relative (0 within it)
    ceiling: bool = True  # the figure must not exceed it (False: not fall below it)
    unknown: str = ""  # what a result whose figure is not known misses ('' : it passes)
    size: bool = False  # given as text (15MiB, 40GB) and kept in bytes
    kind: type = field(default=float)


LIMITS: tuple[Limit, ...] = (
    Limit("max_size", "max_size_bytes", "max size", "15MiB", "hard limit on the saved size, e.g. 15MiB or 40GB",
          {"gt": 0}, lambda r: r.size_bytes,
          lambda r, lim: f"size {f.mib(r.size_bytes)} MiB > max {f.mib(lim)} MiB "
                         f"(over by {100 * (r.size_bytes / lim - 1):.0f}%)", _over, size=True, kind=int),
    Limit("min_tok_s", "min_decode_tok_s", "min tok/s", "tok/s", "hard limit: at least this decode speed here",
          {"gt": 0}, lambda r: r.decode_tok_s,
          lambda r, lim: f"decode {r.decode_tok_s:.1f} tok/s < min {lim:g} "
                         f"(short by {100 * (1 - r.decode_tok_s / lim):.0f}%)",
          lambda value, lim: max(0.0, 1 - value / lim), ceiling=False),
    Limit("max_ppl_rise", "max_ppl_rise_pct", "max PPL +%", "%", "hard limit: perplexity rise in percent vs fp32 (a "
          "planned model's published benchmark-average drop where it has no perplexity)", {"ge": 0}, lambda r: r.loss_pct,
          lambda r, lim: f"{'perplexity' if r.ppl_delta_pct is not None else 'benchmark-average drop'} "
                         f"{r.loss_pct:+.1f}% > max +{lim:g}%",
          lambda value, lim: max(0.0, (value - lim) / 100), unknown="accuracy loss not known"),
    Limit("max_kl", "max_kl", "max KL", "KL", "hard limit: mean KL divergence per token", {"ge": 0},
          lambda r: r.kl_mean, lambda r, lim: f"KL {f.sci(r.kl_mean)} > max {f.sci(lim)}", _over,
          unknown="KL not known (the evidence at this size has none)"),
)


def missed(row: Limit, result: Any, limit: float) -> str:
    """What `result` misses of this limit ('' where it meets it)."""
    value = row.metric(result)
    if value is None:
        return row.unknown
    return row.shown(result, limit) if (value > limit if row.ceiling else value < limit) else ""


class _Sized(BaseModel):
    @field_validator(*(row.field for row in LIMITS if row.size), mode="before", check_fields=False)
    @classmethod
    def _size_text(cls, value):
        """A profile may write a size as the command line does (`"5MiB"`)."""
        if not isinstance(value, str):
            return value
        try:
            return parse_size(value)
        except UserError:
            raise ValueError("not a size; write e.g. 500MiB, 2GB or a number of bytes") from None


# the limits a profile, a run's priorities and its export hold, one field per row of LIMITS
Limits = create_model("Limits", __base__=_Sized, __doc__="The hard limits set (None: not set).",
                      **{row.field: (row.kind | None, Field(None, **row.bound)) for row in LIMITS})
