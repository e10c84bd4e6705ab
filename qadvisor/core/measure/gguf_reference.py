"""An unquantized GGUF (F16, BF16 or F32; whole or split) as the reference of checkpoints measured as shipped, as Qwen's
GGUF repos hold one beside their quantized files: written once into the cache as the model folder it stands for (its
tensors as they are, its config and tokenizer from its metadata), which the reference step then reads as any folder."""

from __future__ import annotations

import json
from pathlib import Path

from qadvisor.core.measure.checkpoints import config_from_gguf, file_key, written_once
from qadvisor.errors import UserError
from qadvisor.quantizers import checkpoint, gguf_mix

UNQUANTIZED = ("F32", "F16", "BF16")  # GGUF tensor types whose values a folder holds as they are
SHARD_BYTES = 2 << 30  # tensors per safetensors file: one shard at a time is in memory
REFERENCE_DIR = "gguf-references"  # under the cache root (a part `qadvisor cache` lists)
HF_NAMES = {gguf: hf for hf, gguf in gguf_mix.GGUF_NAMES.items()}
HF_LAYER_NAMES = {gguf: hf for hf, gguf in gguf_mix.GGUF_LAYER_NAMES.items()}


def is_gguf(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix == ".gguf"


def hf_name(name: str) -> str:
    """A GGUF tensor's name in the Hugging Face checkpoint (`blk.3.attn_q.weight` → `model.layers.3.self_attn…`)."""
    if name.startswith("blk."):
        index, rest = name.removeprefix("blk.").split(".", 1)
        return f"model.layers.{index}.{HF_LAYER_NAMES[rest]}"
    return HF_NAMES[name]


def check(path: Path) -> tuple[list, int]:
    """A reference GGUF must be a Qwen2 model whose weights are unquantized; anything else is one UserError. Returns
    its tensors and its vocabulary size."""
    what = f"reference {path}"
    try:
        spec = checkpoint.describe(path)  # a GGUF at all, of Qwen2, every part beside it
    except UserError as exc:
        raise UserError(str(exc).replace(f"checkpoint {path}", what, 1)) from None
    tensors = checkpoint.gguf_tensors(path)
    kinds = sorted({t.tensor_type.name for t in tensors} - set(UNQUANTIZED))
    unknown = [t.name for t in tensors if t.name not in HF_NAMES and t.name.split(".", 2)[-1] not in HF_LAYER_NAMES]
    if kinds:
        raise UserError(f"{what} is quantized itself ({spec.scheme}: {', '.join(kinds)} tensors): pass the unquantized "
                        "model (a folder, or an F16, BF16 or F32 GGUF)")
    if unknown:
        raise UserError(f"{what}: tensor {unknown[0]} is not one of a Qwen2 model's")
    return tensors, checkpoint.shape(spec)["vocab_size"]


def as_folder(path: Path, cache_root: Path, say=lambda line: None, room=lambda params, vocab: None) -> Path:
    """The model folder `path` stands for, written once under the cache (keyed by the file's path, size and time);
    `room(params, vocab)` may refuse it (a UserError) before gigabytes are written."""
    path = Path(path).resolve()
    tensors, vocab = check(path)
    room(sum(int(t.n_elements) for t in tensors), vocab)
    split = checkpoint.SPLIT.fullmatch(path.name)

    def build(tmp: Path) -> None:
        say(f"{path.name}: written once as a model folder for the reference (tensors as they are, config and "
            "tokenizer from its metadata)")
        config_from_gguf(path, tmp)
        names = _write_tensors(tensors, tmp)
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["tie_word_embeddings"] = "lm_head.weight" not in names  # llama.cpp reuses token_embd without output
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    return written_once(Path(cache_root) / REFERENCE_DIR / file_key(path) / (split["stem"] if split else path.stem),
                        build)


def _write_tensors(tensors: list, folder: Path) -> list[str]:
    """The tensors as safetensors shards of at most SHARD_BYTES with their index; returns their names."""
    from safetensors.torch import save_file

    shards, shard, size = [], {}, 0
    for t in tensors:
        tensor = _torch(t)
        if shard and size + tensor.nbytes > SHARD_BYTES:
            shards.append(shard)
            shard, size = {}, 0
        shard[hf_name(t.name)] = tensor
        size += tensor.nbytes
    shards.append(shard)
    weight_map = {}
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        tensors.clear()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return list(weight_map)


def _torch(t):
    """A GGUF tensor as torch holds it, in its own type (BF16 arrives as raw bytes: viewed back as bfloat16)."""
    import numpy as np
    import torch

    shape = [int(n) for n in reversed(t.shape)]  # GGUF lists the fastest-varying dimension first
    data = np.ascontiguousarray(t.data)
    if t.tensor_type.name == "BF16":
        return torch.from_numpy(data.view(np.int16).reshape(shape).copy()).view(torch.bfloat16)
    return torch.from_numpy(data.reshape(shape).copy())
