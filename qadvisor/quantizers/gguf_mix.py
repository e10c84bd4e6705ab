"""The name and the type llama.cpp's quantizer gives each weight of a Qwen2 model under qadvisor's GGUF methods,
and so their bytes.

The rules are llama-quant.cpp's (`llama_tensor_get_type_impl` and `tensor_type_fallback`, llama.cpp as vendored in
llama-cpp-python 0.3.36) for a dense Qwen2 model; an importance matrix changes none of them but IQ4_XS's first
ffn_down layers (`linear_type`'s `imatrix`). An MoE layer's experts follow the rules of their dense names
(ffn_down_exps is an ffn_down); llama.cpp's rules for 8-expert models (Mixtral's) are left out: no Qwen has 8. Q4_K_M gives attn_v and
ffn_down of about half the layers Q6_K, chosen by the layer's position among all layers, and a row whose length is
not a multiple of a k-quant's 256 falls back to a 32-block type: Qwen2.5-72B's ffn_down (29,568 inputs) is Q5_0,
or Q8_0 where the mix asks for Q6_K. So a model's bytes are not layers × one layer's, and the layer a slice adds
is not the whole model's average layer (`layer_ratio`).
"""

from __future__ import annotations

import re

from qadvisor.schemas.architecture import Architecture, Weight

BITS = {"F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_1": 6.0, "Q5_K": 5.5, "Q5_0": 5.5, "Q4_K": 4.5, "Q4_0": 4.5,
        "Q3_K": 3.4375, "Q2_K": 2.625, "IQ4_NL": 4.5, "IQ4_XS": 4.25}  # bits per weight, block scales included
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}
BASE = {"gguf-q8_0": "Q8_0", "gguf-q6_k": "Q6_K", "gguf-q4_k_m": "Q4_K", "gguf-q3_k_m": "Q3_K", "gguf-q2_k": "Q2_K"}
IMATRIX = "-imat"  # a method made with an importance matrix: the same types as the method without it
BASE.update({f"{m}{IMATRIX}": BASE[m] for m in ("gguf-q4_k_m", "gguf-q2_k")}, **{"gguf-iq4_xs": "IQ4_XS"})
LAYERS_70B = 80  # llama.cpp's qwen2 loader calls an 80-layer model "70B", which gives attn_v one step more


def block(kind: str) -> int:
    return 256 if kind.endswith("_K") or kind == "IQ4_XS" else 32


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def stored_type(kind: str, n_in: int) -> str:
    """A row that a type's blocks do not tile falls back to a 32-block type, else to F16."""
    if n_in % block(kind) == 0:
        return kind
    other = FALLBACK.get(kind, kind)
    return other if n_in % block(other) == 0 else "F16"


def linear_type(method: str, role: str, i: int, n: int, arch: Architecture, imatrix: bool = True) -> str:
    """The type of linear `role` (q_proj … down_proj) in decoder layer `i` of `n`, before the fallback. `imatrix`:
    whether the file is made with an importance matrix (IQ4_XS keeps its first ffn_down layers only then)."""
    kind = BASE[method]
    method = method.removesuffix(IMATRIX)
    if method == "gguf-iq4_xs":
        return _iq4_xs_type(role, i, n, arch, imatrix) or kind
    if role in ("v_proj", "in_proj_qkv", "in_proj_qkvz"):  # llama.cpp counts attn_qkv as an attn_v
        if method == "gguf-q2_k":
            kind = "Q4_K" if arch.num_attention_heads // arch.num_key_value_heads >= 4 else "Q3_K"
        elif method == "gguf-q3_k_m":
            kind = "Q5_K" if i < 2 else "Q4_K"
        elif method == "gguf-q4_k_m" and _more_bits(i, n):
            kind = "Q6_K"
        if n == LAYERS_70B and kind in ("Q3_K", "Q4_K"):
            kind = "Q5_K"
    elif role == "down_proj":
        if method == "gguf-q2_k":
            kind = "Q3_K"
        elif method == "gguf-q3_k_m":
            kind = "Q5_K" if i < n // 16 else "Q4_K"
        elif method == "gguf-q4_k_m" and _more_bits(i, n):
            kind = "Q6_K"
    elif role == "o_proj" and method in ("gguf-q2_k", "gguf-q3_k_m"):
        kind = "Q3_K" if method == "gguf-q2_k" else "Q4_K"
    return kind


def _iq4_xs_type(role: str, i: int, n: int, arch: Architecture, imatrix: bool) -> str | None:
    """IQ4_XS's exceptions: Q5_K for attn_v where 4 or more heads share it, and for the first eighth of ffn_down
    when no importance matrix weighs them."""
    if role == "v_proj" and arch.num_attention_heads // arch.num_key_value_heads >= 4:
        return "Q5_K"
    if role == "down_proj" and not imatrix and i < n // 8:
        return "Q5_K"
    return None


KEPT_BITS = 32.0  # llama.cpp's converter writes routers (ffn_gate_inp, ffn_gate_inp_shexp) in F32; quantizing skips them


def layer_weight_bits(method: str, i: int, arch: Architecture) -> list[tuple[Weight, float]]:
    """Each weight kind of decoder layer `i` with the bits of one of its matrices in a model of
    `arch.num_hidden_layers` layers. An expert's matrices follow the dense matrix of their name (ffn_down_exps is
    an ffn_down to llama.cpp's rules); a linear-attention projection takes the mix's base type (an estimate)."""
    n = arch.num_hidden_layers
    return [(w, w.n_in * w.n_out * (BITS[stored_type(linear_type(method, w.name, i, n, arch), w.n_in)]
                                    if w.quantized else KEPT_BITS))
            for w in arch.layer_weights(i)]


def layer_bits(method: str, i: int, arch: Architecture) -> float:
    """Bits of decoder layer `i`'s weight matrices (every expert's) in a model of `arch.num_hidden_layers` layers."""
    return sum(bits * w.count for w, bits in layer_weight_bits(method, i, arch))


def table_types(method: str, arch: Architecture) -> tuple[str, str]:
    """The types of (token_embd, output): the output is Q6_K (Q8_0 for Q8_0, or where 256 does not divide the hidden
    size); a tied model has no output tensor and its token_embd is quantized as the output would be."""
    base = BASE[method]
    output = "Q8_0" if arch.hidden_size % block(base) or base == "Q8_0" else "Q6_K"
    embed = output if arch.tie_word_embeddings else stored_type(base, arch.hidden_size)
    return embed, output


def table_bits(method: str, arch: Architecture) -> tuple[float, float]:
    """Bits per weight of (token_embd, output)."""
    embed, output = table_types(method, arch)
    return BITS[embed], BITS[output]


def stored_linear_type(method: str, role: str, i: int, n: int, arch: Architecture, n_in: int | None = None) -> str:
    """The type a linear is stored as in the file: the mix's choice after the fallback for its row length. A linear
    the architecture keeps unquantized (the shared expert's gate, one row) llama.cpp still quantizes: its row
    length `n_in` gives its fallback."""
    found = next((inputs for name, inputs, _ in arch.layer_linears(i) if name == role), n_in)
    return stored_type(linear_type(method, role, i, n, arch), found)


def layer_ratio(method: str, arch: Architecture, depths: tuple[int, int]) -> float:
    """The planned model's average layer ÷ the layers a deeper slice adds over a shallower one (each slice quantized as a
    model of its own depth), in bytes: what a slice projection of a memory-bound decode is short of."""
    def total(layers: int) -> float:
        sliced = arch.model_copy(update={"num_hidden_layers": layers})
        return sum(layer_bits(method, i, sliced) for i in range(layers))

    added = (total(depths[1]) - total(depths[0])) / (depths[1] - depths[0])
    return total(arch.num_hidden_layers) / arch.num_hidden_layers / added


GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight"}
# an MoE layer's experts, one tensor each in the checkpoint, stacked into one 3-D tensor per matrix kind
GGUF_EXPERT_NAMES = {"gate_proj": "ffn_gate_exps.weight", "up_proj": "ffn_up_exps.weight",
                     "down_proj": "ffn_down_exps.weight"}
EXPERT_KEY = re.compile(r"mlp\.experts\.(?:(\d+)\.)?(gate_proj|up_proj|down_proj)\.weight$")  # one, or all stacked


# a decoder layer's GGUF tensor (`attn_q.weight`) → its linear's role in gguf_mix (q_proj)
HF_ROLES = {gguf: hf.split(".")[1] for hf, gguf in GGUF_LAYER_NAMES.items() if hf.endswith("proj.weight")}


def gguf_name(key: str, tied: bool) -> str:
    """The GGUF name of a checkpoint tensor; a tied model's lm_head is token_embd (llama.cpp reuses it)."""
    if key == "lm_head.weight" and tied:
        return "token_embd.weight"
    if key.startswith("model.layers."):
        index, rest = key.removeprefix("model.layers.").split(".", 1)
        expert = EXPERT_KEY.match(rest)
        return f"blk.{index}.{GGUF_EXPERT_NAMES[expert.group(2)] if expert else GGUF_LAYER_NAMES[rest]}"
    return GGUF_NAMES[key]
