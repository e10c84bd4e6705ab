"""Random-weight Qwen2 checkpoints at a real shape: a whole model (`synthetic:Qwen2.5-0.5B`) or a slice of one
(a few decoder layers of, say, Qwen2.5-72B), written tensor by tensor in bf16 so the full model is never built.

Speed does not depend on the values of the weights, so these measure the real backends at the real shape;
their accuracy numbers would mean nothing and are not scored.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from qadvisor.schemas.plan import Architecture

MARKER = "synthetic.json"
BUILDER_VERSION = 3  # bump when the weights written here change, so cached directories are rebuilt
SEED = 0
INIT_STD = 0.02  # transformers' initializer_range for Qwen2: what a freshly built model holds
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
COPIED = ("tokenizer.json", "tokenizer_config.json", "heldout.txt", "calib.txt")


def marker(model_dir: Path) -> dict | None:
    path = Path(model_dir) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def build(arch: Architecture, target: Path, text_dir: Path, info: dict, reuse: Path | None = None) -> Path:
    """Write `arch` with random weights to `target` (once: a complete, current directory is reused). `reuse`: a
    deeper model of the same shape built here, whose table and first layers are linked instead of written."""
    found = marker(target)
    if found and found.get("builder") == BUILDER_VERSION:
        return target
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_config(arch, tmp)
    same_shape = reuse is not None and (marker(reuse) or {}).get("builder") == BUILDER_VERSION and \
        _shape(reuse) == _shape_of(arch)
    _write_weights(arch, tmp, reuse if same_shape else None)
    for name in COPIED:  # the small tokenizer's ids fit any Qwen vocabulary
        shutil.copy(text_dir / name, tmp / name)
    (tmp / MARKER).write_text(json.dumps({**info, "architecture": arch.name, "weights": f"random, seed {SEED}",
                                          "builder": BUILDER_VERSION}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
              "tie_word_embeddings")


def _shape(model_dir: Path) -> tuple:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return tuple(config.get(k) for k in SHAPE_KEYS)


def _shape_of(arch: Architecture) -> tuple:
    return tuple(getattr(arch, k) for k in SHAPE_KEYS)


def _write_config(arch: Architecture, out: Path) -> None:
    from transformers import Qwen2Config

    Qwen2Config(
        hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size, num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads, num_key_value_heads=arch.num_key_value_heads,
        vocab_size=arch.vocab_size, tie_word_embeddings=arch.tie_word_embeddings, max_position_embeddings=4096,
        bos_token_id=0, eos_token_id=0, dtype="bfloat16",
    ).save_pretrained(str(out))


def _layer_shapes(arch: Architecture, index: int) -> dict[str, tuple[int, ...]]:
    prefix = f"model.layers.{index}."
    shapes = {f"{prefix}{'self_attn' if n in ATTENTION else 'mlp'}.{n}.weight": (o, i) for n, i, o in arch.layer_linears()}
    if arch.attention_qkv_bias:
        for name, _, out in arch.layer_linears()[:3]:
            shapes[f"{prefix}self_attn.{name}.bias"] = (out,)
    shapes[f"{prefix}input_layernorm.weight"] = (arch.hidden_size,)
    shapes[f"{prefix}post_attention_layernorm.weight"] = (arch.hidden_size,)
    return shapes


def _tensor(name: str, shape: tuple[int, ...], generator):
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return torch.empty(shape, dtype=torch.bfloat16).normal_(0.0, INIT_STD, generator=generator)


def _write_weights(arch: Architecture, out: Path, reuse: Path | None = None) -> None:
    """One safetensors shard per decoder layer plus one for the embeddings: peak memory is one shard. Each shard
    has its own seed, so a shard of a deeper model built earlier (`reuse`) is the same file: it is linked."""
    import torch
    from safetensors.torch import save_file

    table = {"model.embed_tokens.weight": (arch.vocab_size, arch.hidden_size), "model.norm.weight": (arch.hidden_size,)}
    if not arch.tie_word_embeddings:
        table["lm_head.weight"] = (arch.vocab_size, arch.hidden_size)
    shards = {"model-table.safetensors": table}
    shards.update({f"model-layer-{i:05d}.safetensors": _layer_shapes(arch, i) for i in range(arch.num_hidden_layers)})
    weight_map, total = {}, 0
    for number, (file, shapes) in enumerate(shards.items()):
        weight_map.update(dict.fromkeys(shapes, file))
        total += sum(math.prod(shape) for shape in shapes.values()) * 2
        if reuse is not None and (reuse / file).is_file():
            os.link(reuse / file, out / file)
            continue
        generator = torch.Generator().manual_seed(SEED + number)
        save_file({name: _tensor(name, shape, generator) for name, shape in shapes.items()}, str(out / file),
                  metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
