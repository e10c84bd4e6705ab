"""An unquantized GGUF (F16, BF16 or F32; whole or split) as the reference of checkpoints measured as shipped, as Qwen's
GGUF repos hold one beside their quantized files: written once into the cache as the model folder it stands for (its
tensors as they are, its config and tokenizer from its metadata), which the reference step then reads as any folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

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


def _tensors(path: Path) -> list:
    import gguf

    return [t for part in checkpoint.gguf_parts(path) for t in gguf.GGUFReader(str(part)).tensors]


def check(path: Path) -> tuple[int, int]:
    """A reference GGUF must be a Qwen2 model whose weights are unquantized; anything else is one UserError. Returns
    its parameters and vocabulary size (for the memory check before gigabytes are written)."""
    what = f"reference {path}"
    try:
        spec = checkpoint.describe(path)  # a GGUF at all, of Qwen2, every part beside it
    except UserError as exc:
        raise UserError(str(exc).replace(f"checkpoint {path}", what, 1)) from None
    tensors = _tensors(path)
    kinds = sorted({t.tensor_type.name for t in tensors} - set(UNQUANTIZED))
    unknown = [t.name for t in tensors if t.name not in HF_NAMES and t.name.split(".", 2)[-1] not in HF_LAYER_NAMES]
    if kinds:
        raise UserError(f"{what} is quantized itself ({spec.scheme}: {', '.join(kinds)} tensors): pass the unquantized "
                        "model (a folder, or an F16, BF16 or F32 GGUF)")
    if unknown:
        raise UserError(f"{what}: tensor {unknown[0]} is not one of a Qwen2 model's")
    return sum(int(t.n_elements) for t in tensors), checkpoint.shape(spec)["vocab_size"]


def as_folder(path: Path, cache_root: Path, say=lambda line: None) -> Path:
    """The model folder `path` stands for, written once under the cache (keyed by the file's path, size and time)."""
    path = Path(path).resolve()
    check(path)
    stat = path.stat()
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    split = checkpoint.SPLIT.fullmatch(path.name)
    folder = Path(cache_root) / REFERENCE_DIR / key / (split["stem"] if split else path.stem)
    if (folder / "config.json").is_file():
        return folder
    say(f"{path.name}: written once as a model folder for the reference (tensors as they are, config and tokenizer "
        "from its metadata)")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from qadvisor.core.measure.checkpoints import config_from_gguf

    config_from_gguf(path, tmp)
    names = _write_tensors(path, tmp)
    config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
    config["tie_word_embeddings"] = "lm_head.weight" not in names  # llama.cpp reuses token_embd where output is absent
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tmp.rename(folder)
    return folder


def _write_tensors(path: Path, folder: Path) -> list[str]:
    """Every tensor of every part, as safetensors shards of at most SHARD_BYTES with their index; returns the names."""
    from safetensors.torch import save_file

    shards, shard, size = [], {}, 0
    for t in _tensors(path):
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
