"""Find and check the model to measure, and the texts it is evaluated and calibrated on."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
from pathlib import Path

import psutil

from qadvisor import format as f
from qadvisor.bundled import bundled_dir
from qadvisor.core.architectures import param_count, resolve_architecture
from qadvisor.core.measure import memory, synthetic
from qadvisor.core.measure.jobs import Reference
from qadvisor.errors import UserError
from qadvisor.quantizers.base import weights_bytes_on_disk
from qadvisor.schemas.architecture import UnknownFamily, family_of
from qadvisor.schemas.jsonfile import read_json_object

BUNDLED_MODEL_NAME = "qwen2-tiny-stdlib"
EVAL_FILE = "heldout.txt"
CALIB_FILE = "calib.txt"


def bundled_model_dir() -> Path:
    """The model that ships with qadvisor: the checkout's assets/, or the copy a wheel installed."""
    candidate = bundled_dir("assets") / BUNDLED_MODEL_NAME
    if candidate.is_dir():
        return candidate
    raise UserError(f"the bundled model {BUNDLED_MODEL_NAME} is missing from this install; pass --model DIR")


def read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no config.json, so not a Hugging Face model directory")
    return read_json_object(path, "model config")


def _check_safetensors(path: Path) -> int:
    """Read the header only: a truncated or garbled file fails here, cheaply. Returns its tensor bytes."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                raise ValueError("header length out of range")
            header = json.loads(fh.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: corrupt safetensors file ({exc})") from None
    if path.stat().st_size < 8 + length + end:
        raise UserError(f"{path}: corrupt safetensors file (truncated)")
    return end


def check_model_dir(model_dir: Path) -> dict:
    """Every way a model directory can be unusable, as one clear UserError. Returns its config."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise UserError(f"model directory {model_dir} not found")
    if not model_dir.is_dir():
        gguf = (" (a GGUF is measured as a checkpoint, --model FILE.gguf; an unquantized one may be a checkpoint's "
                "--reference)") if model_dir.suffix == ".gguf" else ""
        raise UserError(f"{model_dir} is not a directory (pass a Hugging Face model directory){gguf}")
    config = read_config(model_dir)
    try:
        family_of(config)
    except UnknownFamily as exc:
        raise UserError(f"{model_dir}: {exc}") from None
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise UserError(f"{model_dir}: no *.safetensors weights")
    for path in weights:
        _check_safetensors(path)
    if not any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise UserError(f"{model_dir}: no tokenizer files (tokenizer.json)")
    return config


def check_memory(model_dir: Path, config: dict, backends: dict[str, str], scored_tokens: int) -> None:
    """Room for the reference step and each trial (core.measure.memory); a slice was sized for its trials when it was built
    (core.plan.slices), so only that size is checked."""
    need = (synthetic.marker(model_dir) or {}).get("need_bytes")
    if need is not None:
        free = psutil.virtual_memory().available
        if need > free:
            raise UserError(f"not enough memory to measure {model_dir.name}: needs about {f.gib(need)}, "
                            f"{f.gib(free)} available")
        return
    memory.check({"the reference": "torch", **backends}, stored_params(model_dir), config["vocab_size"], scored_tokens)


def text_for(model_dir: Path, name: str, override: Path | None = None) -> tuple[Path, str]:
    """The evaluation or calibration text: an explicit file, else the model's own, else the bundled one."""
    candidates = [override] if override else [Path(model_dir) / name, None]
    for path in candidates:
        path = path or bundled_model_dir() / name  # None: fall back to the bundled model's text
        if path.is_file():
            try:
                return path, path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: unreadable text ({exc})") from None
    raise UserError(f"no {name} found for {model_dir}" if not override else f"{override}: no such file")


def check_eval_length(model_dir: Path, path: Path, window: int, windows: int, prompt_tokens: int) -> None:
    """The evaluation text must fill a window and the benchmark's prompt: one line now, not a failed reference step
    later. Counted with the model's own tokenizer.json (no torch needed)."""
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    if not tokenizer_file.is_file():
        return  # the reference step's tokenizer load says what is missing
    from tokenizers import Tokenizer

    count = len(Tokenizer.from_file(str(tokenizer_file)).encode(path.read_text(encoding="utf-8")).ids)
    need = max(window, prompt_tokens)
    if min(windows, count // window) * window < need:
        raise UserError(f"{path}: {count} tokens of evaluation text; at least {need} are needed "
                        f"(windows of {window} tokens, a prompt of {prompt_tokens})")


def check_context(model_dir: Path, config: dict, window: int, prompt_tokens: int, decode_tokens: int) -> None:
    """Every sequence a trial feeds the model must fit its context window (max_position_embeddings): positions past
    it were never trained, and a runtime that preallocates (llama.cpp) sizes its cache by it."""
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int):
        return
    if prompt_tokens + decode_tokens > limit:
        raise UserError(f"--prompt-tokens {prompt_tokens} + --decode-tokens {decode_tokens} = "
                        f"{prompt_tokens + decode_tokens} tokens: more than the context window of {Path(model_dir).name} "
                        f"({limit} tokens, its max_position_embeddings)", field="prompt_tokens")
    if window > limit:
        raise UserError(f"evaluation windows of {window} tokens: more than the context window of "
                        f"{Path(model_dir).name} ({limit} tokens)", field="model")


def check_calib_text(model_dir: Path, path: Path, min_tokens: int) -> None:
    """A calibrated method needs at least one paragraph (split by blank lines) of `min_tokens` tokens: one line now,
    not a failed trial later."""
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    if not tokenizer_file.is_file():
        return
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if not any(len(tokenizer.encode(p).ids) >= min_tokens for p in paragraphs(path)):
        raise UserError(f"{path}: no paragraph of at least {min_tokens} tokens to calibrate on (paragraphs are "
                        "split by blank lines)")


def paragraphs(path: Path) -> list[str]:
    """A calibration text as calibrated methods take it: paragraphs split by blank lines, empty ones left out."""
    return [p for p in Path(path).read_text(encoding="utf-8").split("\n\n") if p.strip()]


def fingerprint(model_dir: Path, *extra: str) -> str:
    """A cache key for the model's weights and the evaluation settings (size + head + tail of each file)."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")) + [Path(model_dir) / "config.json"]:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            digest.update(fh.read())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]


SYNTHETIC_PREFIX = "synthetic:"


def is_synthetic(model_dir: Path) -> bool:
    return synthetic.marker(model_dir) is not None


def synthetic_model_dir(spec: str, cache_dir: Path) -> Path:
    """`synthetic:Qwen2.5-0.5B`: the real architecture with random bf16 weights (seed 0), built once and cached.

    It lets the real backends quantize a model of the real shape, so the planner's size and memory
    predictions can be checked against measurements; its accuracy numbers would mean nothing.
    """
    return build_synthetic(check_synthetic(spec), cache_dir)


def build_synthetic(arch, cache_dir: Path) -> Path:
    """The random-weight model of an architecture already checked (`check_synthetic`), built once and cached."""
    return synthetic.build(arch, Path(cache_dir) / "synthetic" / arch.name, bundled_model_dir(), {})


def check_synthetic(spec: str):
    """The architecture behind `synthetic:NAME` or `synthetic:NAME:Nlayers` (its first N layers: the real layer
    shapes where the whole model cannot be built here), if this machine has the memory to measure it."""
    name, _, depth = spec.removeprefix(SYNTHETIC_PREFIX).partition(":")
    arch = resolve_architecture(name)
    if depth:
        arch = reduced_depth(arch, depth)
    need = memory.floor_bytes(param_count(arch), arch.vocab_size)  # each method is checked once they are known
    if need > psutil.virtual_memory().available:
        raise UserError(f"not enough memory to measure synthetic:{arch.name} with any method: needs at least "
                        f"{f.gib(need)}, "
                        f"{f.gib(psutil.virtual_memory().available)} available (`qadvisor plan` estimates it)")
    return arch


def reduced_depth(arch, depth: str):
    """`arch` with its first N layers (`4layers` or `4`); a hybrid model keeps at least one layer of each type."""
    layers = depth.removesuffix("layers")
    if not layers.isdigit() or not 1 <= int(layers) <= arch.num_hidden_layers:
        raise UserError(f"synthetic:{arch.name}:{depth}: write the depth as 1layers … "
                        f"{arch.num_hidden_layers}layers (the model has {arch.num_hidden_layers})")
    if int(layers) < arch.full_attention_interval:
        raise UserError(f"synthetic:{arch.name}:{depth}: a hybrid model needs at least {arch.full_attention_interval} "
                        "layers to hold a full-attention layer beside its linear-attention ones")
    return arch.model_copy(update={"num_hidden_layers": int(layers), "name": f"{arch.name}-{layers}layers"})


def synthetic_reference(model_dir: Path):
    """A random-weight model's reference needs no child process: it is saved in bf16, so its parameters and its
    bf16 bytes are read from the files, and there is no accuracy to score."""
    return Reference(params=stored_params(model_dir), bf16_bytes=weights_bytes_on_disk(Path(model_dir)), ref_ppl=None,
                     eval_tokens=0)


def stored_params(model_dir: Path) -> int:
    """Parameters in the model's safetensors files, read from their headers (no weights loaded)."""
    return sum(math.prod(info["shape"]) for path in sorted(Path(model_dir).glob("*.safetensors"))
               for info in tensor_header(path).values())


def tensor_header(path: Path) -> dict:
    """A safetensors file's tensors by name (dtype, shape, offsets), from its header alone."""
    with Path(path).open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def check_disk(model_dir: Path, bits: list[float], cache_root: Path | None, work_root: Path) -> None:
    """Room for the run's files, before it starts: each quantized model is written to the work folder (the largest,
    with llama.cpp's unquantized GGUF beside it, at a time) and, when models are cached, all of them to the cache.
    Sizes from the parameter count and each method's bits (an estimate; group scales add a few %)."""
    bf16 = 2 * stored_params(model_dir)
    sizes = [bf16 * b / 16 for b in bits]
    wanted = [(_existing(work_root), 1.1 * (max(sizes, default=0) + bf16))]
    if cache_root is not None:
        wanted.append((_existing(cache_root), 1.1 * sum(sizes)))
    roots: dict[int, Path] = {}
    needs: dict[int, float] = {}
    for root, need in wanted:  # on one file system the two add up
        device = root.stat().st_dev
        roots.setdefault(device, root)
        needs[device] = needs.get(device, 0.0) + need
    for device, need in needs.items():
        root = roots[device]
        free = shutil.disk_usage(root).free
        if need > free:
            raise UserError(f"not enough disk for this run: about {f.gib(need)} needed in {root} for the "
                            f"quantized models, {f.gib(free)} free (fewer --methods, or free some space)")


def _existing(path: Path) -> Path:
    return next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("/"))
