"""Qwen3-Next and Qwen3.5/3.6 (dense and MoE) as llama.cpp's qwen3next, qwen35 and qwen35moe read them: the
hyperparameters and each checkpoint tensor's GGUF name and form, as llama.cpp's own converter writes them
(conversion/qwen.py of the llama.cpp that llama-cpp-python 0.3.36 vendors: Qwen3NextModel,
_LinearAttentionVReorderBase, _Qwen35MRopeMixin). Its transforms:

- RMSNorm weights are stored as offsets from 1 by transformers and as the multiplier by llama.cpp: + 1, except the
  linear attention's gated norm, which transformers stores plain;
- A_log becomes ssm_a = −exp(A_log); dt_bias is ssm_dt's bias; the depthwise convolution loses its middle axis;
- where a linear-attention layer has more value heads than key heads (Qwen3.5), the value heads are reordered from
  grouped by key head to tiled, in every tensor that holds them (ggml broadcasts tiled);
- Qwen3-Next stores q, k, v and the output gate fused per key head (in_proj_qkvz): split into attn_qkv and attn_gate.
MTP layers are left out, as llama.cpp runs without them.
"""

from __future__ import annotations

from typing import Callable

from qadvisor.schemas.architecture import Architecture

ARCH = {"qwen3_next": "qwen3next", "qwen3_5": "qwen35", "qwen3_5_moe": "qwen35moe"}
MROPE_SECTIONS = [11, 11, 10, 0]  # the converter's default where a checkpoint's rope_parameters state none
Transform = Callable[[object], object]


def add_shape(w, arch: Architecture, config: dict) -> None:
    """What llama.cpp's loader reads for these architectures besides the common attention shape."""
    w.add_ssm_conv_kernel(arch.linear_conv_kernel_dim)
    w.add_ssm_state_size(arch.linear_key_head_dim)
    w.add_ssm_group_count(arch.linear_num_key_heads)
    w.add_ssm_time_step_rank(arch.linear_num_value_heads)
    w.add_ssm_inner_size(arch.linear_value_head_dim * arch.linear_num_value_heads)
    w.add_full_attention_interval(arch.full_attention_interval)
    text = {**config, **(config.get("text_config") or {})}
    rope = text.get("rope_parameters") or {}
    w.add_rope_dimension_count(int(arch.dim_per_head * rope.get("partial_rotary_factor",
                                                                text.get("partial_rotary_factor", 0.25))))
    if arch.family != "qwen3_next":
        sections = rope.get("mrope_section")
        w.add_rope_dimension_sections(list(sections) + [0] * (4 - len(sections)) if sections else MROPE_SECTIONS)
    if arch.shared_expert_intermediate_size:
        w.add_expert_shared_feed_forward_length(arch.shared_expert_intermediate_size)


def outputs(key: str, arch: Architecture) -> list[tuple[str, Transform]]:
    """The GGUF tensors a checkpoint tensor becomes, each with its transform: `key` under `model.layers.N.` or the
    table's names (already without an image-text checkpoint's prefix); [] for what llama.cpp does not load."""
    import gguf

    if key.startswith("mtp.") or ".mtp." in key:
        return []
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, ARCH[arch.family].upper()), arch.num_hidden_layers)
    if key.endswith("in_proj_qkvz.weight"):
        stem = names.get_name(key.removesuffix(".in_proj_qkvz.weight") + ".in_proj_qkv")
        gate = stem.replace("attn_qkv", "attn_gate")
        return [(f"{stem}.weight", lambda t: _qkvz(t, arch)[0]), (f"{gate}.weight", lambda t: _qkvz(t, arch)[1])]
    base, suffix = key.rsplit(".", 1) if key.endswith((".weight", ".bias")) else (key, "")
    if base.endswith(".dt_bias"):
        base, suffix = base.removesuffix(".dt_bias") + ".dt_proj", "bias"
    name = names.get_name(base)
    if name is None:
        raise KeyError(f"{key}: no GGUF name for it in llama.cpp's {ARCH[arch.family]}")
    return [(f"{name}.{suffix}" if suffix else name, lambda t: transform(key, t, arch))]


def transform(key: str, tensor, arch: Architecture):
    """A checkpoint tensor in the form llama.cpp's converter writes it (see the module's docstring)."""
    import torch

    if key.endswith(".A_log"):
        tensor = -torch.exp(tensor.float())
    elif "conv1d" in key:
        tensor = tensor.squeeze(1)
    elif key.endswith("norm.weight") and not key.endswith("linear_attn.norm.weight"):
        tensor = tensor.float() + 1
    return _tiled(key, tensor, arch)


def _tiled(key: str, tensor, arch: Architecture):
    """A Qwen3.5 linear-attention tensor with its value heads reordered from grouped to tiled."""
    import torch

    nk, nv = arch.linear_num_key_heads, arch.linear_num_value_heads
    if arch.family == "qwen3_next" or nk == nv or "linear_attn." not in key:
        return tensor
    per, hv, qk = nv // nk, arch.linear_value_head_dim, 2 * arch.linear_num_key_heads * arch.linear_key_head_dim
    if ".in_proj_qkv." in key or "conv1d" in key:
        return torch.cat([tensor[:qk], _reorder(tensor[qk:], 0, nk, per, hv)], dim=0)
    if ".in_proj_z." in key:
        return _reorder(tensor, 0, nk, per, hv)
    if ".in_proj_b." in key or ".in_proj_a." in key or key.endswith((".A_log", ".dt_bias")):
        return _reorder(tensor, 0, nk, per, 1)
    if ".out_proj." in key:
        return _reorder(tensor, 1, nk, per, hv)
    return tensor


def _reorder(tensor, dim: int, heads_k: int, per_k: int, head_dim: int):
    shape = list(tensor.shape)
    grouped = tensor.reshape(*shape[:dim], heads_k, per_k, head_dim, *shape[dim + 1:])
    return grouped.transpose(dim, dim + 1).contiguous().reshape(*shape)


def _qkvz(tensor, arch: Architecture):
    """Qwen3-Next's fused [q, k, v, z] per key head, as (attn_qkv: every q, then k, then v; attn_gate: every z)."""
    import torch

    hk, hv = arch.linear_key_head_dim, arch.linear_value_head_dim
    nk, per = arch.linear_num_key_heads, arch.linear_num_value_heads // arch.linear_num_key_heads
    parts = torch.split(tensor.T.reshape(arch.hidden_size, nk, -1), [hk, hk, per * hv, per * hv], dim=-1)
    q, k, v, z = (p.reshape(arch.hidden_size, -1) for p in parts)
    return torch.cat([q, k, v], dim=-1).T.contiguous(), z.T.contiguous()
