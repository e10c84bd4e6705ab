"""Memory for each step of a run, checked before it starts: a trial that cannot fit is refused in one line, not
killed by the OOM killer minutes later. Each figure is an estimate from peak RSS measured per backend
(qadvisor/data/trial-memory.json says where and how)."""

from __future__ import annotations

import psutil

from qadvisor import format as f
from qadvisor.bundled import package_data
from qadvisor.errors import UserError


def measured() -> dict:
    return package_data("trial-memory.json")


def need_bytes(backend: str, params: int, vocab: int, scored_tokens: int) -> int:
    """A trial's peak memory (estimate): the runtime, the model as the backend holds it while quantizing, saving and
    reloading, and the log-probs it compares when accuracy is scored. A backend not measured (the test mock) gets
    the largest factor."""
    data = measured()
    factor = data["factor"].get(backend, max(data["factor"].values()))
    return int(data["base_bytes"] + factor * 4 * params + 2 * scored_tokens * vocab * 4)


def floor_bytes(params: int, vocab: int) -> int:
    """What the cheapest backend's trial needs: below it no method can be measured."""
    cheapest = min(measured()["factor"], key=measured()["factor"].get)
    return need_bytes(cheapest, params, vocab, 0)


def check(steps: dict[str, str], params: int, vocab: int, scored_tokens: int, available: int | None = None) -> None:
    """`steps`: name → backend. Every step that would not fit is named in one UserError line. The reference step
    loads, scores and saves the fp32 model as the fp32 trial does, so it is checked as one (backend `torch`)."""
    available = psutil.virtual_memory().available if available is None else available
    needs = {name: need_bytes(backend, params, vocab, scored_tokens) for name, backend in steps.items()}
    short = {name: need for name, need in needs.items() if need > available}
    if short:
        worst = max(short.values())
        raise UserError(f"not enough memory for {', '.join(short)}: up to {f.gib(worst)} a trial (estimate "
                        f"from peak RSS measured per backend), {f.gib(available)} available; leave "
                        f"{'them' if len(short) > 1 else 'it'} out of --methods, or free memory")


def check_as_shipped(name: str, disk_bytes: int, vocab: int, scored_tokens: int) -> None:
    """A checkpoint measured as shipped is only loaded, never quantized: the runtime, twice its files (an estimate:
    its weights as loaded, and what a kernel unpacks around them) and the log-probs compared when accuracy is scored."""
    need = measured()["base_bytes"] + 2 * disk_bytes + 2 * scored_tokens * vocab * 4
    available = psutil.virtual_memory().available
    if need > available:
        raise UserError(f"not enough memory to measure {name}: about {f.gib(need)} (estimate: the runtime and "
                        f"twice the checkpoint's {f.gib(disk_bytes)}), {f.gib(available)} available")
