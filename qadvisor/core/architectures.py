"""The Qwen2 architectures every part of qadvisor shares: the built-in Qwen2.5 shapes, a model folder's config, and
the parameter count of a shape (no weights read)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from qadvisor.core.hub import folder_name
from qadvisor.errors import UserError
from qadvisor.schemas.jsonfile import read_json_object
from qadvisor.schemas.plan import Architecture


def builtin_architectures() -> dict[str, Architecture]:
    return {name: Architecture(name=name, **shape) for name, shape in json.loads(resources.files("qadvisor.data").joinpath("qwen2.5-architectures.json").read_text(encoding="utf-8")).items()
            if not name.startswith("_")}


def resolve_architecture(spec: str) -> Architecture:
    """A built-in name (`Qwen2.5-72B`, case-insensitive, `Qwen2.5-` optional) or a config.json / model directory."""
    builtins = builtin_architectures()
    for name, arch in builtins.items():
        if spec.lower() in (name.lower(), name.lower().removeprefix("qwen2.5-")):
            return arch
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise UserError(f"unknown model {spec!r}: use one of {', '.join(builtins)} or a path to a Qwen2 config.json")
    if path.suffix == ".gguf":  # a quantized file says its type, not the deployment's choice among methods
        raise UserError(f"{path}: a GGUF file; plan for its model by name ({', '.join(list(builtins)[:2])}, …) or by "
                        "its unquantized folder, and measure the file itself with --model")
    config = read_json_object(path, "model config")
    if config.get("model_type") not in ("qwen2",):
        raise UserError(f"{path}: model_type {config.get('model_type')!r}; the planner knows Qwen2-style models")
    try:
        return Architecture.from_config(folder_name(path.parent), config)
    except KeyError as exc:
        raise UserError(f"{path}: missing {exc.args[0]!r}") from None


def param_count(arch: Architecture) -> int:
    h, layers = arch.hidden_size, arch.num_hidden_layers
    linear = sum(i * o for _, i, o in arch.layer_linears())
    bias = (arch.num_attention_heads + 2 * arch.num_key_value_heads) * arch.dim_per_head if arch.attention_qkv_bias else 0
    embed = arch.vocab_size * h * (1 if arch.tie_word_embeddings else 2)
    return embed + layers * (linear + bias + 2 * h) + h
