"""A GGUF mix made for a budget: the budget a `gguf-mix@…` method's name carries, the GGUF types each matrix may
take, and the solver that picks one type per matrix — the least predicted loss under the size, or the least size
under a loss ceiling. Pure arithmetic: the sensitivities come from quantizers.sensitivity.

The predicted loss of a mix is the sum of each matrix's added KL at its type: an additivity assumption, which every
measured mix checks (its predicted KL beside the KL measured on the held-out text)."""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

from qadvisor.errors import UserError
from qadvisor.format import MIB
from qadvisor.quantizers.gguf_mix import BITS, block
from qadvisor.schemas.limits import SIZE_RE, parse_size

NAME = "gguf-mix"  # bare, it takes --max-size as its budget (app.auto)
PREFIX = f"{NAME}@"
SCHEME = "mix"  # a mix's MethodSpec.scheme
# the types a matrix may take, smallest first: llama.cpp's k-quants and IQ4_XS where 256 tiles the row, its 32-block
# types anywhere; the i-quants below 4 bits are left out (llama.cpp refuses them without an importance matrix)
CANDIDATES = ("Q2_K", "Q3_K", "IQ4_XS", "Q4_K", "Q4_0", "IQ4_NL", "Q5_K", "Q5_0", "Q5_1", "Q6_K", "Q8_0", "F16")
FP32_BITS = 32.0
_FORM = re.compile(r"^gguf-mix@(?P<budget>[^:]+?)(?::table=(?P<table>[\w]+))?$", re.I)


@dataclass(frozen=True)
class Budget:
    """What a mix is made for: `bpw` bits per weight of the matrices, `bytes` of the whole GGUF file, or `kl` the
    predicted KL ceiling (the least size under it); `table` holds the embeddings and the head at one type."""

    kind: str  # bpw, bytes or kl
    value: float
    table: str | None = None

    def words(self) -> str:
        held = f", embeddings and head held at {self.table}" if self.table else ""
        if self.kind == "bpw":
            return f"{self.value:g} bits per weight{held}"
        if self.kind == "bytes":
            return f"a {self.value / MIB:,.2f} MiB file{held}"
        return f"a predicted KL of at most {self.value:g}{held}"


def parse_budget(name: str) -> Budget:
    """`gguf-mix@4.2bpw`, `gguf-mix@40GiB`, `gguf-mix@11800KiB`, `gguf-mix@kl0.01`, each with an optional
    `:table=Q8_0`; anything else is one UserError line."""
    match = _FORM.match(name.strip())
    if not match:
        raise UserError(f"method {name!r}: write gguf-mix@<budget>[:table=TYPE], the budget as 4.2bpw, 40GiB, "
                        "11800KiB or kl0.01")
    text, table = match.group("budget").strip().lower(), match.group("table")
    if table is not None and table.upper() not in CANDIDATES:
        raise UserError(f"method {name!r}: table type {table!r} is none of {', '.join(CANDIDATES)}")
    table = table.upper() if table else None
    if text.endswith("bpw"):
        value = _number(name, text.removesuffix("bpw"))
        if value < BITS["Q2_K"] or value > FP32_BITS:
            raise UserError(f"method {name!r}: {value:g} bits per weight is "
                            + (f"below the smallest type (Q2_K, {BITS['Q2_K']:g})" if value < BITS["Q2_K"]
                               else "above fp32 (32)"))
        return Budget("bpw", value, table)
    if text.startswith("kl"):
        value = _number(name, text.removeprefix("kl"))
        if value <= 0:
            raise UserError(f"method {name!r}: a KL ceiling must be above 0")
        return Budget("kl", value, table)
    if SIZE_RE.match(text):
        value = parse_size(text, f"method {name!r}'s budget")
        if value <= 0:
            raise UserError(f"method {name!r}: a size must be above 0")
        return Budget("bytes", float(value), table)
    raise UserError(f"method {name!r}: budget {text!r} is not 4.2bpw, a size (40GiB, 11800KiB) or kl0.01")


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"method {name!r}: {text!r} is not a number") from None


def candidates(n_in: int) -> list[str]:
    """The types whose blocks tile a row of `n_in` values."""
    return [kind for kind in CANDIDATES if n_in % block(kind) == 0]


@dataclass
class Matrix:
    """One matrix the mix gives a type: its GGUF name, shape, and the KL each candidate type adds alone."""

    name: str
    rows: int
    n_in: int
    added_kl: dict[str, float]

    def bytes(self, kind: str) -> float:
        return self.rows * self.n_in * BITS[kind] / 8

    def options(self) -> list[tuple[float, float, str]]:
        """(bytes, KL, type) on the lower convex hull: more bytes always buy less KL, at a falling rate."""
        by_size: dict[float, tuple[float, str]] = {}
        for kind, kl in self.added_kl.items():
            size = self.bytes(kind)
            if size not in by_size or kl < by_size[size][0]:
                by_size[size] = (kl, kind)
        hull: list[tuple[float, float, str]] = []
        for size, (kl, kind) in sorted(by_size.items()):
            if hull and kl >= hull[-1][1]:
                continue  # more bytes, no less loss
            while len(hull) >= 2 and _slope(hull[-2], hull[-1]) >= _slope(hull[-1], (size, kl, kind)):
                hull.pop()  # the middle point is above the line: never the best step
            hull.append((size, kl, kind))
        return hull


def _slope(a: tuple, b: tuple) -> float:
    return (b[1] - a[1]) / (b[0] - a[0])  # negative: KL falls as bytes rise


def smallest_bytes(matrices: list[Matrix]) -> float:
    return sum(min(m.bytes(k) for k in m.added_kl) for m in matrices)


def solve(matrices: list[Matrix], max_bytes: float | None = None, max_kl: float | None = None) -> dict[str, str]:
    """A type per matrix: starting from each matrix's smallest type, the step that buys the most KL per byte is taken
    while it fits under `max_bytes`, or, with `max_kl`, until the predicted KL is under it (the least bytes that
    reach it, greedily)."""
    hulls = {m.name: m.options() for m in matrices}
    at = {name: 0 for name in hulls}
    used = sum(h[0][0] for h in hulls.values())
    kl = sum(h[0][1] for h in hulls.values())
    steps = [(_slope(h[0], h[1]), name) for name, h in hulls.items() if len(h) > 1]  # smallest first: most KL a byte
    heapq.heapify(steps)
    while steps and (max_kl is None or kl > max_kl):
        _, name = heapq.heappop(steps)
        hull, i = hulls[name], at[name]
        extra = hull[i + 1][0] - hull[i][0]
        if max_bytes is not None and used + extra > max_bytes:
            continue  # a later, smaller step may still fit
        used, kl, at[name] = used + extra, kl - (hull[i][1] - hull[i + 1][1]), i + 1
        if i + 2 < len(hull):
            heapq.heappush(steps, (_slope(hull[i + 1], hull[i + 2]), name))
    return {name: hulls[name][i][2] for name, i in at.items()}


def predicted_kl(matrices: list[Matrix], types: dict[str, str]) -> float:
    return sum(m.added_kl[types[m.name]] for m in matrices)


def matrix_bytes(matrices: list[Matrix], types: dict[str, str]) -> float:
    return sum(m.bytes(types[m.name]) for m in matrices)
