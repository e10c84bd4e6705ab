"""The report's pictures, drawn with matplotlib: the size-against-KL trade-off of every method measured (speed as
colour, uniform GGUF recipes and mixes marked) and each GGUF mix's sensitivity map (layers × weight groups, colour the
KL each matrix adds at its chosen type, the type written in its cell). matplotlib is optional: without it the report
says how to get them."""

from __future__ import annotations

import math
from pathlib import Path

from qadvisor.format import MIB
from qadvisor.schemas.export import RunExport
from qadvisor.schemas.result import TrialResult

GROUPS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
INSTALL = "pip install matplotlib"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plots(export: RunExport, report: Path) -> list[tuple[str, str]]:
    """The pictures beside the report (`run.md` → `run.tradeoff.png`, `run.mix-1.png`…): (caption, file name) each."""
    if not available():
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    made = []
    measured = [r for r in export.results if r.status == "ok" and r.size_bytes and r.kl_mean]  # KL 0: the reference
    if len(measured) >= 2:
        path = report.with_name(f"{report.stem}.tradeoff.png")
        tradeoff(measured, path)
        made.append(("Size against KL, every quantized method measured (colour: decode tok/s; ★ GGUF mix, ● uniform "
                     "GGUF, ■ other backends; the unquantized reference, KL 0, left out)", path.name))
    for i, r in enumerate(r for r in export.results if r.status == "ok" and r.mix is not None):
        path = report.with_name(f"{report.stem}.mix-{i + 1}.png")
        sensitivity_map(r, path)
        made.append((f"{r.method}: the type each matrix took, coloured by the KL it adds there", path.name))
    return made


def tradeoff(results: list[TrialResult], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    speeds = [r.decode_tok_s or 0.0 for r in results]
    for r, speed in zip(results, speeds):
        marker = "*" if r.mix is not None else "o" if r.method.startswith("gguf-") else "s"
        dot = ax.scatter(r.size_bytes / MIB, r.kl_mean, c=[speed], cmap="viridis", vmin=min(speeds),
                         vmax=max(speeds) or 1, marker=marker, s=160 if marker == "*" else 60, edgecolors="black")
        ax.annotate(r.method, (r.size_bytes / MIB, r.kl_mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    fig.colorbar(dot, ax=ax, label="decode tok/s (measured here)")
    ax.set_xlabel("size on disk, MiB")
    ax.set_ylabel("KL vs fp32, nats/token (log)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cells(result: TrialResult) -> tuple[list[list[float]], list[list[str]], list[str]]:
    """(KL added, type) per decoder layer and weight group, and the tables' lines (embeddings, head)."""
    mix = result.mix
    layers = 1 + max((int(n.split(".")[1]) for n in mix.tensor_types if n.startswith("blk.")), default=-1)
    kl = [[math.nan] * len(GROUPS) for _ in range(layers)]
    kinds = [[""] * len(GROUPS) for _ in range(layers)]
    tables = []
    for name, kind in mix.tensor_types.items():
        added = mix.added_kl.get(name, {}).get(kind, math.nan)
        parts = name.split(".")
        if parts[0] == "blk" and parts[2] in GROUPS:
            kl[int(parts[1])][GROUPS.index(parts[2])] = added
            kinds[int(parts[1])][GROUPS.index(parts[2])] = kind
        elif parts[0] != "blk":
            tables.append(f"{parts[0]} {kind} (KL {added:.2g})")
    return kl, kinds, tables


def sensitivity_map(result: TrialResult, path: Path) -> None:
    import matplotlib.colors as colors
    import matplotlib.pyplot as plt

    kl, kinds, tables = cells(result)
    values = [v for row in kl for v in row if v == v and v > 0]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(kl)), dpi=110)
    shown = [[v if v == v and v > 0 else float("nan") for v in row] for row in kl]
    image = ax.imshow(shown, aspect="auto", cmap="magma_r",
                      norm=colors.LogNorm(min(values), max(values)) if values else None)
    middle = math.sqrt(min(values) * max(values)) if values else 0.0
    for i, row in enumerate(kinds):
        for j, kind in enumerate(row):  # light text on the dark (costly) cells, dark on the light ones
            ax.text(j, i, kind, ha="center", va="center", fontsize=6,
                    color="white" if shown[i][j] == shown[i][j] and shown[i][j] > middle else "black")
    ax.set_xticks(range(len(GROUPS)), GROUPS, fontsize=7)
    ax.set_yticks(range(len(kl)), [f"layer {i}" for i in range(len(kl))], fontsize=6)
    ax.set_title(f"{result.method}: {result.mix.bits_per_weight:.2f} bits/weight; " + "; ".join(tables), fontsize=8)
    fig.colorbar(image, ax=ax, label="KL added at the chosen type")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
