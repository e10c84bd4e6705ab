"""Checkpoints that are already quantized (Qwen's GPTQ, AWQ and GGUF releases, or a team's own), measured as they
are: what a checkpoint says of itself, as the MethodSpec of the backend that reads its format.

Reading a checkpoint's description opens its config.json or the GGUF header only: no weights, no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from qadvisor.errors import UserError
from qadvisor.schemas.architecture import UnknownFamily, family_of
from qadvisor.schemas.jsonfile import read_json_object
from qadvisor.schemas.method import AS_SHIPPED as PREFIX, MethodSpec

GGUF_MAGIC = b"GGUF"
# llama.cpp's split GGUF (llama-gguf-split; Qwen's larger GGUF releases): NAME-00001-of-00003.gguf and its siblings
PART = r"-(?P<no>\d{5})-of-(?P<count>\d{5})"  # a split GGUF part's place in its name
SPLIT = re.compile(rf"(?P<stem>.+){PART}\.gguf")
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads")
# the GGUF metadata (under the architecture's name) that holds each of SHAPE_KEYS
GGUF_SHAPE = {"hidden_size": "embedding_length", "num_hidden_layers": "block_count",
              "intermediate_size": "feed_forward_length", "num_attention_heads": "attention.head_count",
              "num_key_value_heads": "attention.head_count_kv"}


# the llama.cpp architectures of qadvisor's families whose GGUF files it measures as shipped
GGUF_ARCHITECTURES = ("qwen2", "qwen3", "qwen3moe", "qwen3next", "qwen35", "qwen35moe")


@dataclass(frozen=True)
class CheckpointFormat:
    """A quantized format qadvisor measures as shipped: where a checkpoint says it is one, and what reads it."""

    name: str
    quant_method: str  # config.json's quantization_config.quant_method ('' for GGUF: a file of its own)
    backend: str  # the backend whose load() runs it
    package: str  # the distribution that reads it
    install_hint: str


FORMATS = (
    CheckpointFormat("gptq", "gptq", "gptq", "gptqmodel", "BUILD_CUDA_EXT=0 pip install gptqmodel==7.6.0"),
    CheckpointFormat("awq", "awq", "awq", "gptqmodel", "BUILD_CUDA_EXT=0 pip install gptqmodel==7.6.0"),
    CheckpointFormat("bnb", "bitsandbytes", "bnb", "bitsandbytes", "pip install 'bitsandbytes>=0.49'"),
    CheckpointFormat("compressed-tensors", "compressed-tensors", "torch", "compressed-tensors",
                     "pip install compressed-tensors"),
    # Qwen's FP8 releases (block-scaled e4m3): transformers reads them; on a CPU it dequantizes them as it loads
    CheckpointFormat("fp8", "fp8", "torch", "transformers", "pip install 'transformers>=5.2'"),
    CheckpointFormat("gguf", "", "llamacpp", "llama_cpp_python", "pip install llama-cpp-python gguf"),
)
BY_QUANT_METHOD = {f.quant_method: f for f in FORMATS if f.quant_method}


def is_checkpoint(path: str | Path) -> bool:
    """A file (a .gguf, or what `describe` will say is not one) or a folder whose config.json has a
    quantization_config: what `--model` measures as shipped rather than quantizes."""
    path = Path(path)
    if path.is_file():
        return True
    config = path / "config.json"
    try:
        return config.is_file() and "quantization_config" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # check_model_dir says what is wrong with it


def installed(fmt: CheckpointFormat) -> tuple[bool, str]:
    """Whether the library that reads `fmt` is here, and its version (or how to install it)."""
    try:
        return True, f"{fmt.package} {metadata.version(fmt.package)}"
    except metadata.PackageNotFoundError:
        return False, f"{fmt.package} is not installed ({fmt.install_hint})"


def describe(path: str | Path) -> MethodSpec:
    """The checkpoint at `path` as a method: `as-shipped:<format>-<bits>`, its bits, group size and scheme as it
    states them, its summary naming the tool that wrote it. Whatever makes it unmeasurable here is one UserError."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise UserError(f"checkpoint {path} not found")
    try:
        spec = _gguf(path) if path.is_file() else _hf(path)
    except UserError as exc:  # the form's checkpoint field, or --model, named in the line
        raise UserError(f"checkpoint {exc}") from None
    return spec.model_copy(update={"source": str(path)})


def _library(fmt: CheckpointFormat, path: Path) -> None:
    ok, why = installed(fmt)
    if not ok:
        raise UserError(f"{path}: a {fmt.name} checkpoint, and no installed library reads it: {why}")


def _hf(folder: Path) -> MethodSpec:
    config = read_json_object(folder / "config.json", "model config")
    try:
        family_of(config)
    except UnknownFamily as exc:
        raise UserError(f"{folder}: {exc}") from None
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        raise UserError(f"{folder}: config.json's quantization_config is not an object")
    method = str(quant.get("quant_method", "")).lower()
    fmt = BY_QUANT_METHOD.get(method)
    if fmt is None:
        known = ", ".join(sorted(BY_QUANT_METHOD))
        raise UserError(f"{folder}: quantization_config says quant_method {method!r}; no installed library reads it "
                        f"(qadvisor measures {known} checkpoints as shipped)")
    _library(fmt, folder)
    if not any(folder.glob("*.safetensors")):
        raise UserError(f"{folder}: no *.safetensors weights")
    wrote = _writer(quant, config)
    return _HF_READERS[fmt.name](quant, wrote)


def _writer(quant: dict, config: dict) -> str:
    """The tool (and version) that wrote the checkpoint, as far as it says."""
    tools = (quant.get("meta") or {}).get("quantizer")
    if tools:
        return ", ".join(tools) if isinstance(tools, list) else str(tools)
    version = config.get("transformers_version")
    return f"saved by transformers {version}" if version else "tool not recorded"


def _gptq(quant: dict, wrote: str) -> MethodSpec:
    bits, group = int(quant.get("bits", 4)), quant.get("group_size")
    traits = [f"group {group}" if group and group > 0 else "per channel", "symmetric" if quant.get("sym", True)
              else "asymmetric", "act-order" if quant.get("desc_act") else "no act-order",
              f"format {quant.get('checkpoint_format') or quant.get('format') or 'gptq'}"]
    return MethodSpec(name=f"{PREFIX}gptq-int{bits}", backend="gptq", bits=bits, scheme=f"int{bits}",
                      group_size=group if group and group > 0 else None,
                      summary=f"GPTQ {bits}-bit, {', '.join(traits)}; written by {wrote}")


def _awq(quant: dict, wrote: str) -> MethodSpec:
    bits, group = int(quant.get("bits", quant.get("w_bit", 4))), quant.get("group_size", quant.get("q_group_size"))
    version = quant.get("version") or quant.get("format") or "gemm"
    zero = "zero point" if quant.get("zero_point", True) else "no zero point"
    return MethodSpec(name=f"{PREFIX}awq-int{bits}", backend="awq", bits=bits, scheme=f"int{bits}", group_size=group,
                      summary=f"AWQ {bits}-bit, group {group}, {zero}, {version}; written by {wrote}")


def _bnb(quant: dict, wrote: str) -> MethodSpec:
    if quant.get("load_in_8bit") or quant.get("_load_in_8bit"):
        return MethodSpec(name=f"{PREFIX}bnb-int8", backend="bnb", bits=8, scheme="int8",
                          summary=f"bitsandbytes LLM.int8; {wrote}")
    kind = str(quant.get("bnb_4bit_quant_type", "fp4"))
    double = ", double-quantized scales" if quant.get("bnb_4bit_use_double_quant") else ""
    return MethodSpec(name=f"{PREFIX}bnb-{kind}", backend="bnb", bits=4, scheme=kind, group_size=64,
                      summary=f"bitsandbytes 4-bit {kind}, block 64{double}; {wrote}")


def _compressed(quant: dict, wrote: str) -> MethodSpec:
    weights = next((g.get("weights") or {} for g in (quant.get("config_groups") or {}).values()), {})
    bits, group = int(weights.get("num_bits", 8)), weights.get("group_size")
    layout = f"group {group}" if group else f"per {weights.get('strategy') or 'tensor'}"
    wrote = f"written by compressed-tensors {quant['version']}" if quant.get("version") else wrote
    return MethodSpec(name=f"{PREFIX}compressed-tensors-int{bits}", backend="torch", bits=bits, scheme="compressed",
                      group_size=group, summary=f"compressed-tensors {bits}-bit {weights.get('type', 'int')}, {layout}, "
                                                f"{quant.get('format', 'format not stated')}; {wrote}")


def _fp8(quant: dict, wrote: str) -> MethodSpec:
    block = quant.get("weight_block_size") or [128, 128]
    return MethodSpec(name=f"{PREFIX}fp8-{quant.get('fmt', 'e4m3')}", backend="torch", bits=8, scheme="fp8",
                      group_size=int(block[-1]),
                      summary=f"FP8 {quant.get('fmt', 'e4m3')} weights, a scale per {block[0]} × {block[-1]} block, "
                              f"{quant.get('activation_scheme', 'dynamic')} activations; {wrote}")


_HF_READERS = {"gptq": _gptq, "awq": _awq, "bnb": _bnb, "compressed-tensors": _compressed, "fp8": _fp8}


def gguf_parts(path: Path) -> list[Path]:
    """A GGUF's files: the file alone, or every part of a split one given its first (llama.cpp reads the others from
    beside it). A later part, or a part missing, is a UserError."""
    path = Path(path)
    found = SPLIT.fullmatch(path.name)
    if found is None:
        return [path]
    no, count = int(found["no"]), int(found["count"])
    parts = [path.with_name(f"{found['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    if no != 1:
        raise UserError(f"{path}: part {no} of a split GGUF; pass its first part, {parts[0].name}")
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise UserError(f"{path}: a GGUF split in {count} files, and {', '.join(missing)} is not beside it: every "
                        "part is needed")
    return parts


def gguf_tensors(path: Path, first=None) -> list:
    """Every tensor of a GGUF, across the parts of a split one (`first`: the first part's reader, where it is open)."""
    import gguf

    parts = gguf_parts(path)
    readers = [first or gguf.GGUFReader(str(parts[0])), *(gguf.GGUFReader(str(part)) for part in parts[1:])]
    return [t for reader in readers for t in reader.tensors]


def gguf_fields(path: Path) -> dict:
    """A GGUF file's metadata by key (its tokenizer's merges left out), and its tensors' bits per weight; a file that
    is not GGUF is a UserError. Read once per file: describing and checking a checkpoint ask for it several times, and
    a Qwen GGUF's 151,936 tokens take a while to decode (the TUI may meet a file rewritten since: size and time key it)."""
    stat = Path(path).stat()
    return _gguf_fields(str(path), stat.st_size, stat.st_mtime_ns)


@cache
def _gguf_fields(name: str, size: int, mtime_ns: int) -> dict:
    path = Path(name)
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise UserError(f"{path}: not a GGUF file (it does not start with the GGUF magic); pass a .gguf file or "
                            "a checkpoint folder")
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # a truncated or garbled file: whatever the reader raised, in one line
        raise UserError(f"{path}: unreadable GGUF file ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    fields = {key: field.contents() for key, field in reader.fields.items() if key != "tokenizer.ggml.merges"}
    weights = [t for t in gguf_tensors(path, reader) if len(t.shape) > 1]
    fields["bits_per_weight"] = 8 * sum(int(t.n_bytes) for t in weights) / max(1, sum(int(t.n_elements) for t in weights))
    return fields


def _gguf(path: Path) -> MethodSpec:
    _library(next(f for f in FORMATS if f.name == "gguf"), path)
    fields = gguf_fields(path)
    arch = fields.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UserError(f"{path}: a GGUF of architecture {arch!r}; qadvisor measures "
                        f"{', '.join(GGUF_ARCHITECTURES)} GGUF files")
    import gguf

    try:
        kind = gguf.LlamaFileType(int(fields["general.file_type"])).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError):
        kind = "mixed"
    imatrix = ", with an importance matrix" if any(k.startswith("quantize.imatrix") for k in fields) else ""
    wrote = fields.get("general.quantized_by") or f"llama.cpp quantization version {fields.get('general.quantization_version', '?')}"
    bits = round(fields["bits_per_weight"], 2)
    parts = len(gguf_parts(path))
    split = f", split in {parts} files" if parts > 1 else ""
    return MethodSpec(name=f"{PREFIX}gguf-{kind.lower()}", backend="llamacpp", bits=bits, scheme=kind,
                      summary=f"GGUF {kind}{imatrix}, {bits:g} bits per weight{split}; {wrote}")


def shape(spec: MethodSpec) -> dict[str, int]:
    """The checkpoint's architecture (SHAPE_KEYS and vocab_size), as its config or GGUF metadata states it."""
    path = Path(spec.source)
    if path.is_file():
        fields = gguf_fields(path)
        arch = fields.get("general.architecture")
        found = {key: fields.get(f"{arch}.{name}") for key, name in GGUF_SHAPE.items()}
        found["vocab_size"] = len(fields.get("tokenizer.ggml.tokens") or [])
        return found
    config = read_json_object(path / "config.json", "model config")
    return {key: config.get(key) for key in (*SHAPE_KEYS, "vocab_size")}


def vocabulary(spec: MethodSpec) -> list[str] | None:
    """The checkpoint's tokens by id (None when it carries no tokenizer)."""
    path = Path(spec.source)
    if path.is_file():
        return [str(t) for t in gguf_fields(path).get("tokenizer.ggml.tokens") or []] or None
    return tokens_of(path)


def tokens_of(folder: Path) -> list[str] | None:
    """A model folder's tokens by id, from its tokenizer.json's vocabulary and added tokens (None without one)."""
    file = Path(folder) / "tokenizer.json"
    if not file.is_file():
        return None
    data = read_json_object(file, "tokenizer")
    vocab = dict((data.get("model") or {}).get("vocab") or {})
    vocab.update({t["content"]: t["id"] for t in data.get("added_tokens") or [] if "content" in t and "id" in t})
    if not vocab or not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
        raise UserError(f"{file}: no vocabulary of token ids in it")
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    return tokens
