"""A checkpoint's decoder layers as transformers builds them, one at a time, for every family qadvisor knows: the
family's layer class, its rotary embedding and masks (a hybrid model's linear-attention layers take their own),
its final norm, and the checkpoint's tensors under whichever prefix it stores its text model (an image-text
Qwen3.5 under model.language_model), an MoE layer's experts fused as transformers holds them."""

from __future__ import annotations

import importlib

from qadvisor.quantizers.gguf_mix import EXPERT_KEY

# family → (transformers' module, class-name prefix, the rotary embedding's class name)
CLASSES = {"qwen2": ("qwen2", "Qwen2", "Qwen2RotaryEmbedding"), "qwen3": ("qwen3", "Qwen3", "Qwen3RotaryEmbedding"),
           "qwen3_moe": ("qwen3_moe", "Qwen3Moe", "Qwen3MoeRotaryEmbedding"),
           "qwen3_next": ("qwen3_next", "Qwen3Next", "Qwen3NextRotaryEmbedding"),
           "qwen3_5": ("qwen3_5", "Qwen3_5", "Qwen3_5TextRotaryEmbedding"),
           "qwen3_5_moe": ("qwen3_5_moe", "Qwen3_5Moe", "Qwen3_5MoeTextRotaryEmbedding")}
TEXT_PREFIXES = ("model.language_model.", "model.")  # where an image-text checkpoint keeps its text model, else


def _modeling(family: str):
    module = CLASSES[family][0]
    return importlib.import_module(f"transformers.models.{module}.modeling_{module}")


def family_class(family: str, suffix: str):
    return getattr(_modeling(family), f"{CLASSES[family][1]}{suffix}")


def rotary(family: str, config):
    return getattr(_modeling(family), CLASSES[family][2])(config)


def text_prefix(names) -> str:
    """The prefix of the text model's tensors in a checkpoint (`model.` or an image-text one's)."""
    return next((p for p in TEXT_PREFIXES if any(n.startswith(p + "layers.") for n in names)), "model.")


def fused_experts(tensors: dict) -> dict:
    """A layer's tensors with its experts (one tensor per expert and matrix, as checkpoints store them) fused as
    transformers 5 holds them: gate_up_proj [experts, 2 × inner, hidden] (gate rows first), down_proj
    [experts, hidden, inner]."""
    import torch

    experts: dict[str, dict[int, object]] = {}
    rest = {}
    for name, tensor in tensors.items():
        match = EXPERT_KEY.match(name)
        if match and match.group(1) is not None:  # one expert's matrix (the pattern also takes them stacked)
            experts.setdefault(match.group(2), {})[int(match.group(1))] = tensor
        else:
            rest[name] = tensor
    if not experts:
        return rest
    stack = {kind: torch.stack([by_index[i] for i in sorted(by_index)]) for kind, by_index in experts.items()}
    rest["mlp.experts.gate_up_proj"] = torch.cat([stack["gate_proj"], stack["up_proj"]], dim=1)
    rest["mlp.experts.down_proj"] = stack["down_proj"]
    return rest


def positions(family: str, length: int):
    """(the rotary embedding's position ids, the layers' own): Qwen3.5's rotary embedding takes its three mrope
    sections, each the text's positions."""
    import torch

    text = torch.arange(length)[None]
    return (text[None].expand(3, 1, length) if family in ("qwen3_5", "qwen3_5_moe") else text), text


def masks(family: str, config, hidden, text_positions) -> dict:
    """The attention mask of each layer type, as the family's model makes them."""
    from transformers.masking_utils import create_causal_mask

    kwargs = dict(config=config, inputs_embeds=hidden, attention_mask=None, cache=None, position_ids=text_positions)
    found = {"full_attention": create_causal_mask(**kwargs)}
    if family in ("qwen3_next", "qwen3_5", "qwen3_5_moe"):
        from transformers.masking_utils import create_recurrent_attention_mask

        found["linear_attention"] = create_recurrent_attention_mask(**kwargs)
    return found
