"""A quantized checkpoint measured as it is: checked against the unquantized model it is compared with (`--reference`),
or, without one, measured for size and speed against a folder of its own config and tokenizer."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from qadvisor.core.architectures import param_count
from qadvisor.core.hub import folder_name
from qadvisor.core.measure.jobs import Reference
from qadvisor.errors import UserError
from qadvisor.quantizers import checkpoint
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.jsonfile import read_json_object
from qadvisor.schemas.method import MethodSpec

STAND_IN_DIR = "checkpoints"  # under the cache root (a part `qadvisor cache` lists)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "generation_config.json")
ESTIMATED_BF16 = "estimate: parameters × 2 bytes, no --reference to save in bf16"


def describe_all(paths: list[str]) -> list[MethodSpec]:
    """Checkpoints measured side by side: each described, named apart where two state the same method (by folder or
    file name), a path given twice refused."""
    specs = [checkpoint.describe(p) for p in paths]
    sources = [s.source for s in specs]
    twice = sorted({s for s in sources if sources.count(s) > 1})
    if twice:
        raise UserError(f"checkpoint listed twice: {', '.join(twice)}")
    names = [s.name for s in specs]
    named = [f"{s.name}@{_label(Path(s.source))}" if names.count(s.name) > 1 else s.name for s in specs]
    named = [f"{name}#{i + 1}" if named.count(name) > 1 else name for i, name in enumerate(named)]
    return [s.model_copy(update={"name": name}) for s, name in zip(specs, named)]


def _label(path: Path) -> str:
    """A checkpoint's name as a person knows it: its folder (a repo's name for a cached snapshot), or its file (a kept
    `model.gguf`: the folder it is in; a split GGUF: its name without the part's number)."""
    if path.is_file():
        split = checkpoint.SPLIT.fullmatch(path.name)
        return folder_name(path.parent) if path.stem == "model" else split["stem"] if split else path.stem
    return folder_name(path)


def check_reference(specs: list[MethodSpec], reference: Path) -> None:
    """The reference must be the model the checkpoints were quantized from: the same shape and the same tokens by id,
    else its log-probabilities mean nothing for theirs (one UserError saying where they differ)."""
    what = f"reference {reference} (--reference, the model beside a checkpoint)"
    if checkpoint.is_checkpoint(reference):
        raise UserError(f"{what} is quantized itself: pass the unquantized model the checkpoint was made from")
    config = read_json_object(Path(reference) / "config.json", "model config")
    shape = {key: config.get(key) for key in (*checkpoint.SHAPE_KEYS, "vocab_size")}
    tokens = checkpoint.tokens_of(Path(reference))
    for spec in specs:
        _same_model(spec, shape, tokens, what)


def check_together(specs: list[MethodSpec]) -> None:
    """Checkpoints measured side by side without a reference: the same model, quantized differently."""
    first = specs[0]
    shape, tokens = checkpoint.shape(first), checkpoint.vocabulary(first)
    for other in specs[1:]:
        _same_model(other, shape, tokens, f"checkpoint {first.source}")


def _same_model(spec: MethodSpec, shape: dict, tokens: list[str] | None, what: str) -> None:
    """`spec` against another model's shape and tokens by id; where they differ is one UserError about `what`."""
    mine = checkpoint.shape(spec)
    differ = [f"{key} {mine[key]} here, {shape.get(key)} there" for key in mine
              if mine[key] is not None and shape.get(key) is not None and mine[key] != shape[key]]
    name = _label(Path(spec.source))
    if differ:
        raise UserError(f"{what}: not the model {name} was quantized from ({'; '.join(differ)})")
    ours = checkpoint.vocabulary(spec)
    if not ours or not tokens:
        return
    wrong = next((i for i, token in enumerate(tokens) if token and (i >= len(ours) or ours[i] != token)), None)
    if wrong is not None:
        here = ours[wrong] if wrong < len(ours) else "nothing"
        raise UserError(f"{what}: its tokenizer differs from {name}'s (token {wrong} is {here!r} in the checkpoint, "
                        f"{tokens[wrong]!r} there)")


def stand_in(spec: MethodSpec, cache_root: Path, say=lambda line: None) -> Path:
    """Without a reference, the folder the run's checks and the trial's tokenizer read: the checkpoint's own config
    and tokenizer files, or for a GGUF the ones its metadata holds (read by transformers). Made once, in the cache."""
    source = Path(spec.source)

    def build(tmp: Path) -> None:
        if source.is_dir():
            if not any((source / name).is_file() for name in TOKENIZER_FILES[:3]):
                raise UserError(f"{source}: no tokenizer files, so nothing to feed it text with; pass --reference DIR "
                                "(the unquantized model it was made from)")
            for name in ("config.json", *TOKENIZER_FILES):
                if (source / name).is_file():
                    shutil.copy2(source / name, tmp / name)
        else:
            say(f"{source.name}: its config and tokenizer read from the GGUF metadata (once)")
            config_from_gguf(source, tmp)

    return written_once(Path(cache_root) / STAND_IN_DIR / f"{source.stem}-{file_key(source)}", build)


def file_key(path: Path) -> str:
    """What a folder made from the user's file is cached under: its path, size and time (a file rewritten is new)."""
    stat = Path(path).stat()
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def written_once(folder: Path, build) -> Path:
    """`folder`, made by `build(tmp)` the first time and renamed into place whole (a run stopped halfway leaves only
    a `.partial` folder, made again the next time); later, as it is."""
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    tmp.rename(folder)
    return folder


def config_from_gguf(source: Path, folder: Path) -> None:
    """The config and tokenizer a GGUF's metadata holds, saved into `folder` as a model folder holds them."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        AutoConfig.from_pretrained(str(source.parent), gguf_file=source.name).save_pretrained(str(folder))
        AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name).save_pretrained(str(folder))
    except Exception as exc:  # the GGUF header passed; transformers could not rebuild its tokenizer
        raise UserError(f"{source}: its tokenizer could not be read from the GGUF ({type(exc).__name__}); pass "
                        "--reference DIR (the unquantized model it was made from)") from None


def unscored_reference(model_dir: Path):
    """The reference of a run without one: the parameter count from the config and an estimated bf16 size."""
    config = read_json_object(Path(model_dir) / "config.json", "model config")
    params = param_count(Architecture.from_config(Path(model_dir).name, config))
    return Reference(params=params, bf16_bytes=2 * params, ref_ppl=None, eval_tokens=0, bf16_basis=ESTIMATED_BF16)
