"""GGUF with an importance matrix, as most published GGUF files are made. The matrix is llama.cpp's imatrix: per
weight, the mean over the calibration text of each input column's squared activation, here taken with torch from
the model itself; every matrix is then quantized by llama.cpp's own `ggml_quantize_chunk` with its row of it, in the
type llama.cpp's mix gives it (quantizers.gguf_mix), and written as a GGUF (quantizers.ggufwrite.to_gguf)."""

from __future__ import annotations

from pathlib import Path

from qadvisor.quantizers import gguf_mix
from qadvisor.quantizers.base import load_hf
from qadvisor.quantizers.gguf_mix import HF_ROLES, gguf_name
from qadvisor.schemas.architecture import Architecture

CHUNK_TOKENS = 512  # llama.cpp's imatrix tool reads the text in chunks of its context, 512 tokens by default
MAX_CHUNKS = 32
MIN_TOKENS = 16


def importance(model_dir: Path, texts: list[str], progress=lambda fraction: None) -> dict[str, object]:
    """GGUF tensor name → float32 importance per input column, from the fp32 model over `texts` (one stream, cut
    into chunks). The output head's goes to token_embd where the model ties them: llama.cpp multiplies by it."""
    import torch
    from transformers import AutoTokenizer

    model = load_hf(model_dir, torch.float32, "cpu")
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    ids = AutoTokenizer.from_pretrained(str(model_dir))("\n\n".join(texts)).input_ids[:CHUNK_TOKENS * MAX_CHUNKS]
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def collect(name: str):
        def hook(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [module.register_forward_pre_hook(collect(gguf_name(f"{name}.weight", tied)))
               for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    chunks = [ids[i:i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)]
    chunks = [c for c in chunks if len(c) >= MIN_TOKENS]
    if not chunks:
        raise ValueError("no calibration text to compute an importance matrix from")
    try:
        with torch.no_grad():
            for i, chunk in enumerate(chunks):
                model(torch.tensor([chunk]), use_cache=False)
                progress((i + 1) / len(chunks))
    finally:
        for handle in handles:
            handle.remove()
    return {name: (sums[name] / counts[name]).numpy() for name in sums}


def tensor_types(method: str, model_dir: Path):
    """(GGUF name, row length) → the type llama.cpp's mix gives that matrix under `method`, after the fallback for a
    row its blocks do not tile (None: kept as the checkpoint has it)."""
    import json

    arch = Architecture.from_config(model_dir.name, json.loads((model_dir / "config.json").read_text()))
    n = arch.num_hidden_layers
    embed, output = gguf_mix.table_types(method, arch)

    def kind(name: str, n_in: int) -> str | None:
        if name == "token_embd.weight":
            return embed
        if name == "output.weight":
            return output
        parts = name.split(".")
        role = HF_ROLES.get(".".join(parts[2:]))
        if parts[0] != "blk" or role is None:
            return None  # norms and biases
        return gguf_mix.stored_type(gguf_mix.linear_type(method, role, int(parts[1]), n, arch, imatrix=True), n_in)

    return kind

