"""The architectures every part of qadvisor shares: the built-in Qwen2.5, Qwen3, Qwen3-MoE, Qwen3-Next and
Qwen3.5/3.6 shapes, a model folder's config, and the parameter counts of a shape (no weights read)."""

from __future__ import annotations

from pathlib import Path

from qadvisor.bundled import package_data
from qadvisor.core.hub import folder_name
from qadvisor.errors import UserError
from qadvisor.schemas.architecture import Architecture, UnknownFamily
from qadvisor.schemas.jsonfile import read_json_object

SHAPE_FILES = ("qwen2.5-architectures.json", "qwen3-architectures.json")


def builtin_architectures() -> dict[str, Architecture]:
    found = {}
    for file in SHAPE_FILES:
        shapes = package_data(file)
        found.update({name: Architecture(name=name, **shape) for name, shape in shapes.items()
                      if not name.startswith("_")})
    return found


def named(spec: str) -> Architecture | None:
    """A built-in size by name (case-insensitive; `Qwen2.5-` may be left out of a Qwen2.5 name)."""
    for name, arch in builtin_architectures().items():
        if spec.lower() in (name.lower(), name.lower().removeprefix("qwen2.5-")):
            return arch
    return None


def known_names() -> str:
    return ", ".join(builtin_architectures())


def resolve_architecture(spec: str) -> Architecture:
    """A built-in name (`Qwen2.5-72B`, `Qwen3-30B-A3B`) or a config.json / model directory."""
    arch = named(spec)
    if arch is not None:
        return arch
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise UserError(f"unknown model {spec!r}: use one of {known_names()}, or a path to a Qwen config.json")
    if path.suffix == ".gguf":  # a quantized file says its type, not the deployment's choice among methods
        raise UserError(f"{path}: a GGUF file; plan for its model by name (Qwen2.5-72B, Qwen3-32B, …) or by "
                        "its unquantized folder, and measure the file itself with --model")
    return from_config_file(path)


def from_config_file(path: Path) -> Architecture:
    """The architecture a config.json describes; one UserError for a family qadvisor does not know or a missing size."""
    config = read_json_object(path, "model config")
    try:
        return Architecture.from_config(folder_name(path.parent), config)
    except UnknownFamily as exc:
        raise UserError(f"{path}: {exc}") from None
    except KeyError as exc:
        raise UserError(f"{path}: missing {exc.args[0]!r}") from None


def param_count(arch: Architecture) -> int:
    """Every parameter the model runs with (all experts), without an image-text checkpoint's vision tower or MTP
    layers (`stored_extra_params`)."""
    layers = sum(_layer_params(arch, i) for i in range(arch.num_hidden_layers))
    embed = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    return int(embed + layers + arch.hidden_size)


def active_param_count(arch: Architecture) -> int:
    """The parameters one token computes with: the routed experts' top-k share, everything else whole (one
    embedding row aside, the table is counted as the head reads it)."""
    layers = sum(_layer_params(arch, i, active=True) for i in range(arch.num_hidden_layers))
    embed = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    return int(embed + layers + arch.hidden_size)


def stored_extra_params(arch: Architecture) -> dict[str, int]:
    """What a checkpoint stores beside the text model transformers runs: MTP layers (one decoder layer, a 2h → h
    projection and three norms each) and a vision tower, by name; empty when there is none."""
    extra = {}
    if arch.mtp_layers:
        last = arch.num_hidden_layers - 1  # a full-attention layer in every hybrid pattern
        per = _layer_params(arch, last) + 2 * arch.hidden_size ** 2 + 3 * arch.hidden_size
        extra[f"{arch.mtp_layers} MTP layer" + ("s" if arch.mtp_layers > 1 else "")] = int(per * arch.mtp_layers)
    if arch.vision_params:
        extra["a vision tower"] = arch.vision_params
    return extra


def _layer_params(arch: Architecture, index: int, active: bool = False) -> float:
    """Layer `index`'s parameters; `active`: the routed experts counted at the share a token reads."""
    return sum(w.n_in * w.n_out * w.count * (w.active if active else 1) for w in arch.layer_weights(index)) \
        + arch.layer_small_params(index)
