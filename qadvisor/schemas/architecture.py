"""A Qwen model's shape as data: every family qadvisor knows (Qwen2/2.5, Qwen3 dense, Qwen3-MoE, Qwen3-Next and
Qwen3.5/3.6, dense and MoE), read from a config.json or a named size, and the weights of each decoder layer by type.

Dense layers hold seven linears; an MoE layer a router and `num_experts` experts of three matrices each (of which
`num_experts_per_tok` are read per token), and in Qwen3-Next/3.5 a shared expert beside them; a hybrid model's
linear-attention layers (Gated DeltaNet) hold their own projections and a fixed-size recurrent state in place of a
KV cache. Everything that sizes a model (the planner, the synthetic writer, the GGUF mix) reads `layer_weights`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel

# model_type → the family's name as a person says it; the order is the order they are listed in
FAMILIES = {"qwen2": "Qwen2/Qwen2.5", "qwen3": "Qwen3 (dense)", "qwen3_moe": "Qwen3-MoE",
            "qwen3_next": "Qwen3-Next (hybrid, MoE)", "qwen3_5": "Qwen3.5/3.6 (hybrid)",
            "qwen3_5_moe": "Qwen3.5/3.6-MoE (hybrid)"}
# Qwen3-Next and Qwen3.5 store RMSNorm weights as offsets from 1 (their norms multiply by 1 + weight)
ZERO_CENTERED_NORMS = ("qwen3_next", "qwen3_5", "qwen3_5_moe")
FULL, LINEAR = "full_attention", "linear_attention"


class Weight(NamedTuple):
    """One weight matrix kind of a decoder layer: `count` matrices of in × out (experts: one per expert)."""

    role: str  # the module path under the layer: self_attn.q_proj, mlp.experts.down_proj, linear_attn.out_proj
    n_in: int
    n_out: int
    count: int = 1
    active: float = 1.0  # the share of the `count` matrices a decoded token reads (top-k of the routed experts)
    quantized: bool = True  # False: kept as shipped by every method here (the router, the shared expert's gate)

    @property
    def name(self) -> str:
        """The last part of the role (q_proj … down_proj, in_proj_qkv): what llama.cpp's type rules look at."""
        return self.role.rsplit(".", 1)[-1]


class Architecture(BaseModel):
    name: str
    family: Literal["qwen2", "qwen3", "qwen3_moe", "qwen3_next", "qwen3_5", "qwen3_5_moe"] = "qwen2"
    hidden_size: int
    intermediate_size: int = 0  # dense MLP width; 0 where every layer is MoE
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_qkv_bias: bool = True
    head_dim: int | None = None
    qk_norm: bool = False  # Qwen3 on: an RMSNorm of head_dim on each query and key head
    attn_output_gate: bool = False  # Qwen3-Next/3.5: q_proj also emits a gate for the attention output (2× wide)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    dense_layers: list[int] = []  # mlp_only_layers: layers of an MoE model with a dense MLP
    full_attention_interval: int = 1  # hybrid: every n-th layer full attention, the others linear attention
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0
    mtp_layers: int = 0  # Qwen3.5 checkpoints: multi-token-prediction layers, stored but not run by transformers
    vision_params: int = 0  # an image-text checkpoint's vision tower (0: none, or its shape unknown)
    max_position_embeddings: int | None = None

    @classmethod
    def from_config(cls, name: str, config: dict) -> "Architecture":
        """A config.json's shape (its text part where it nests one); a missing size raises KeyError naming it."""
        return cls(name=name, **read_config(config))

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_hybrid(self) -> bool:
        return self.full_attention_interval > 1

    @property
    def family_label(self) -> str:
        return FAMILIES[self.family]

    def layer_type(self, index: int) -> str:
        return FULL if (index + 1) % self.full_attention_interval == 0 else LINEAR

    def layer_is_moe(self, index: int) -> bool:
        return self.is_moe and index not in self.dense_layers

    def full_attention_layers(self) -> int:
        return sum(self.layer_type(i) == FULL for i in range(self.num_hidden_layers))

    def attention_weights(self) -> list[Weight]:
        h, d = self.hidden_size, self.dim_per_head
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        return [Weight("self_attn.q_proj", h, q * (2 if self.attn_output_gate else 1)),
                Weight("self_attn.k_proj", h, kv), Weight("self_attn.v_proj", h, kv), Weight("self_attn.o_proj", q, h)]

    def linear_attention_weights(self) -> list[Weight]:
        h, nv = self.hidden_size, self.linear_num_value_heads
        key, value = self.linear_num_key_heads * self.linear_key_head_dim, nv * self.linear_value_head_dim
        if self.family == "qwen3_next":  # the same projections, stored fused in two
            return [Weight("linear_attn.in_proj_qkvz", h, 2 * key + 2 * value), Weight("linear_attn.in_proj_ba", h, 2 * nv),
                    Weight("linear_attn.out_proj", value, h)]
        return [Weight("linear_attn.in_proj_qkv", h, 2 * key + value), Weight("linear_attn.in_proj_z", h, value),
                Weight("linear_attn.in_proj_b", h, nv), Weight("linear_attn.in_proj_a", h, nv),
                Weight("linear_attn.out_proj", value, h)]

    def mlp_weights(self, index: int) -> list[Weight]:
        h = self.hidden_size
        if not self.layer_is_moe(index):
            i = self.intermediate_size
            return [Weight("mlp.gate_proj", h, i), Weight("mlp.up_proj", h, i), Weight("mlp.down_proj", i, h)]
        e, m, share = self.num_experts, self.moe_intermediate_size, self.num_experts_per_tok / self.num_experts
        weights = [Weight("mlp.gate", h, e, quantized=False),
                   Weight("mlp.experts.gate_proj", h, m, e, share), Weight("mlp.experts.up_proj", h, m, e, share),
                   Weight("mlp.experts.down_proj", m, h, e, share)]
        s = self.shared_expert_intermediate_size
        if s:
            weights += [Weight("mlp.shared_expert.gate_proj", h, s), Weight("mlp.shared_expert.up_proj", h, s),
                        Weight("mlp.shared_expert.down_proj", s, h), Weight("mlp.shared_expert_gate", h, 1, quantized=False)]
        return weights

    def layer_weights(self, index: int) -> list[Weight]:
        """The weight matrices of decoder layer `index`, by kind (norms, biases and state parameters excluded)."""
        mixer = self.attention_weights() if self.layer_type(index) == FULL else self.linear_attention_weights()
        return mixer + self.mlp_weights(index)

    def layer_linears(self, index: int = 0) -> list[tuple[str, int, int]]:
        """(name, in_features, out_features) of the matrices a method quantizes in layer `index`, one per kind."""
        return [(w.name, w.n_in, w.n_out) for w in self.layer_weights(index) if w.quantized]

    def layer_small_params(self, index: int) -> int:
        """Parameters every method keeps as shipped: norms, qkv biases, q/k norms, a linear-attention layer's
        convolution, decay and gated norm."""
        n = 2 * self.hidden_size
        if self.layer_type(index) == FULL:
            d = self.dim_per_head
            n += (self.num_attention_heads + 2 * self.num_key_value_heads) * d if self.attention_qkv_bias else 0
            n += 2 * d if self.qk_norm else 0
        else:
            n += self.conv_dim * self.linear_conv_kernel_dim + 2 * self.linear_num_value_heads + self.linear_value_head_dim
        return n

    @property
    def conv_dim(self) -> int:
        return 2 * self.linear_num_key_heads * self.linear_key_head_dim + \
            self.linear_num_value_heads * self.linear_value_head_dim

    def linear_state_elements(self) -> tuple[int, int]:
        """(recurrent, convolution) state elements of one linear-attention layer for one sequence: fixed, whatever
        the context."""
        recurrent = self.linear_num_value_heads * self.linear_key_head_dim * self.linear_value_head_dim
        return recurrent, self.conv_dim * (self.linear_conv_kernel_dim - 1)

# an image-text checkpoint's text part is a family of its own name in transformers
TEXT_TYPES = {"qwen3_5_text": "qwen3_5", "qwen3_5_moe_text": "qwen3_5_moe"}
SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
MOE_SIZES = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")
LINEAR_SIZES = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
                "linear_conv_kernel_dim")
HYBRID = ("qwen3_next", "qwen3_5", "qwen3_5_moe")
MOE = ("qwen3_moe", "qwen3_next", "qwen3_5_moe")


class UnknownFamily(ValueError):
    """A model_type qadvisor has no description of."""


def family_of(config: dict) -> str:
    """The family of a config (its text part's where it nests one); UnknownFamily otherwise."""
    kind = config.get("model_type")
    text = config.get("text_config")
    if isinstance(text, dict) and text.get("model_type"):
        kind = TEXT_TYPES.get(text["model_type"], text["model_type"])
    kind = TEXT_TYPES.get(kind, kind)
    if kind not in FAMILIES:
        raise UnknownFamily(f"model_type {kind!r}; qadvisor knows "
                            + ", ".join(f"{key} ({label})" for key, label in FAMILIES.items()))
    return kind


def text_part(config: dict) -> dict:
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def read_config(config: dict) -> dict:
    """Architecture fields from a config.json; a missing size raises KeyError naming it."""
    family = family_of(config)
    text = text_part(config)
    fields = {key: text[key] for key in SIZES}
    fields.update(family=family, intermediate_size=text.get("intermediate_size") or 0,
                  tie_word_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
                  head_dim=text.get("head_dim"), max_position_embeddings=text.get("max_position_embeddings"),
                  attention_qkv_bias=family == "qwen2" or bool(text.get("attention_bias", False)),
                  qk_norm=family != "qwen2")
    if family == "qwen2" or family == "qwen3":
        fields["intermediate_size"] = text["intermediate_size"]
    if family in MOE:
        if "num_experts" not in text and "num_local_experts" in text:  # transformers 5 writes this alias
            text = {**text, "num_experts": text["num_local_experts"]}
        fields.update({key: text[key] for key in MOE_SIZES})
        fields.update(shared_expert_intermediate_size=text.get("shared_expert_intermediate_size") or 0,
                      dense_layers=list(text.get("mlp_only_layers") or []))
        if (text.get("decoder_sparse_step") or 1) != 1:
            raise KeyError("decoder_sparse_step of 1 (every layer MoE; other steps are not read here)")
    if family in HYBRID:
        fields.update({key: text[key] for key in LINEAR_SIZES})
        fields.update(attn_output_gate=True,  # transformers always builds the gate for these
                      full_attention_interval=_interval(text), mtp_layers=int(text.get("mtp_num_hidden_layers") or 0))
    if isinstance(config.get("vision_config"), dict):
        fields["vision_params"] = vision_params(config["vision_config"], fields["hidden_size"])
    return fields


def _interval(text: dict) -> int:
    """The hybrid pattern as an interval: layer_types where given (it must be every n-th layer full attention)."""
    types = text.get("layer_types")
    if not types:
        return int(text.get("full_attention_interval", 4))
    interval = types.index("full_attention") + 1
    if any((t == "full_attention") != ((i + 1) % interval == 0) for i, t in enumerate(types)):
        raise KeyError("layer_types as every n-th layer full attention (this pattern is not read here)")
    return interval


def vision_params(vision: dict, text_hidden: int) -> int:
    """Parameters of a Qwen3.5 vision tower (transformers' Qwen3_5VisionModel) from its config: patch embedding,
    position table, `depth` blocks (two LayerNorms, qkv and proj with biases, a two-layer MLP) and the merger."""
    h, inner = vision.get("hidden_size", 1152), vision.get("intermediate_size", 4304)
    patch = vision.get("in_channels", 3) * vision.get("temporal_patch_size", 2) * vision.get("patch_size", 16) ** 2
    merged = h * vision.get("spatial_merge_size", 2) ** 2
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h)
    merger = 2 * h + merged * merged + merged + merged * vision.get("out_hidden_size", text_hidden) + \
        vision.get("out_hidden_size", text_hidden)
    return patch * h + h + vision.get("num_position_embeddings", 2304) * h + vision.get("depth", 27) * block + merger
