"""Random-weight Qwen checkpoints at a real shape, of every family qadvisor knows: a whole model
(`synthetic:Qwen3-0.6B`), fewer of its layers (`synthetic:Qwen3-30B-A3B:4layers`) or a slice of one (a few decoder
layers of, say, Qwen2.5-72B), written tensor by tensor in bf16, as the family's checkpoints lay them out on disk
(an MoE layer's experts one by one), so the full model is never built.

Speed does not depend on the values of the weights, so these measure the real backends at the real shape;
their accuracy numbers would mean nothing and are not scored.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from qadvisor.core.architectures import resolve_architecture
from qadvisor.schemas.architecture import ZERO_CENTERED_NORMS, Architecture

MARKER = "synthetic.json"
BUILDER_VERSION = 4  # bump when the weights written here change, so cached directories are rebuilt
SEED = 0
INIT_STD = 0.02  # transformers' initializer_range for Qwen2: what a freshly built model holds
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


def _shape(model_dir: Path) -> tuple:
    """What a reused folder must share with the architecture built (everything but its depth and name)."""
    return _shape_of(resolve_architecture(str(model_dir)))


def _shape_of(arch: Architecture) -> tuple:
    return tuple(sorted(arch.model_dump(exclude={"name", "num_hidden_layers", "max_position_embeddings", "mtp_layers",
                                                  "vision_params"}).items()))


def _write_config(arch: Architecture, out: Path) -> None:
    """The family's transformers config (a Qwen3.5 as its text model: the vision tower is not built)."""
    import transformers

    cls, extra = CONFIGS[arch.family]
    fields = dict(hidden_size=arch.hidden_size, num_hidden_layers=arch.num_hidden_layers,
                  num_attention_heads=arch.num_attention_heads, num_key_value_heads=arch.num_key_value_heads,
                  vocab_size=arch.vocab_size, tie_word_embeddings=arch.tie_word_embeddings, max_position_embeddings=4096,
                  bos_token_id=0, eos_token_id=0, dtype="bfloat16", intermediate_size=arch.intermediate_size or None)
    if arch.family != "qwen2":
        fields.update(head_dim=arch.dim_per_head, attention_bias=arch.attention_qkv_bias)
    for key in extra:
        fields[key] = getattr(arch, key)
    if arch.is_moe:
        fields.update(mlp_only_layers=arch.dense_layers, norm_topk_prob=True)  # as every Qwen MoE release
    if arch.is_hybrid:
        fields["layer_types"] = [arch.layer_type(i) for i in range(arch.num_hidden_layers)]
    getattr(transformers, cls)(**{k: v for k, v in fields.items() if v is not None}).save_pretrained(str(out))


MOE = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")
LINEAR = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
          "linear_conv_kernel_dim")
CONFIGS = {"qwen2": ("Qwen2Config", ()), "qwen3": ("Qwen3Config", ()), "qwen3_moe": ("Qwen3MoeConfig", MOE),
           "qwen3_next": ("Qwen3NextConfig", MOE + ("shared_expert_intermediate_size",) + LINEAR),
           "qwen3_5": ("Qwen3_5TextConfig", LINEAR),
           "qwen3_5_moe": ("Qwen3_5MoeTextConfig", MOE + ("shared_expert_intermediate_size",) + LINEAR)}


def _layer_shapes(arch: Architecture, index: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of decoder layer `index` as the family's checkpoints name it (experts one by one)."""
    prefix = f"model.layers.{index}."
    shapes = {}
    for w in arch.layer_weights(index):
        if w.count == 1:
            shapes[f"{prefix}{w.role}.weight"] = (w.n_out, w.n_in)
            continue
        module, name = w.role.rsplit(".", 1)
        shapes.update({f"{prefix}{module}.{j}.{name}.weight": (w.n_out, w.n_in) for j in range(w.count)})
    shapes.update({prefix + name: shape for name, shape in _small_shapes(arch, index).items()})
    return shapes


def _small_shapes(arch: Architecture, index: int) -> dict[str, tuple[int, ...]]:
    """Norms, biases and a linear-attention layer's convolution and decay (`Architecture.layer_small_params`)."""
    h = arch.hidden_size
    shapes = {"input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,)}
    if arch.layer_type(index) == "full_attention":
        if arch.attention_qkv_bias:
            shapes.update({f"self_attn.{w.name}.bias": (w.n_out,) for w in arch.attention_weights()[:3]})
        if arch.qk_norm:
            shapes.update({"self_attn.q_norm.weight": (arch.dim_per_head,), "self_attn.k_norm.weight": (arch.dim_per_head,)})
        return shapes
    nv = arch.linear_num_value_heads
    shapes.update({"linear_attn.conv1d.weight": (arch.conv_dim, 1, arch.linear_conv_kernel_dim),
                   "linear_attn.dt_bias": (nv,), "linear_attn.A_log": (nv,),
                   "linear_attn.norm.weight": (arch.linear_value_head_dim,)})
    return shapes


def _tensor(name: str, shape: tuple[int, ...], generator, zero_norms: bool = False):
    """A freshly initialised model's value: norms at their identity (1, or 0 where a family stores 1 + weight; the
    gated norm of a linear-attention layer is plain), biases 0, decay rates spread as transformers draws them."""
    import torch

    if name.endswith("norm.weight"):
        zero = zero_norms and not name.endswith("linear_attn.norm.weight")
        return (torch.zeros if zero else torch.ones)(shape, dtype=torch.bfloat16)
    if name.endswith((".bias", "dt_bias")):
        return (torch.ones if name.endswith("dt_bias") else torch.zeros)(shape, dtype=torch.bfloat16)
    if name.endswith("A_log"):
        return torch.empty(shape).uniform_(1.0, 16.0, generator=generator).log().to(torch.bfloat16)
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
        zero = arch.family in ZERO_CENTERED_NORMS
        save_file({name: _tensor(name, shape, generator, zero) for name, shape in shapes.items()}, str(out / file),
                  metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
