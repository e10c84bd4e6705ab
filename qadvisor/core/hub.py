"""Hugging Face repo ids (`Qwen/Qwen2.5-7B-Instruct`) as model folders, and a GGUF repo's file of one type as llama.cpp's
`-hf` names it (`Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M`): the local Hugging Face cache first (HF_HOME, HF_HUB_OFFLINE
honoured), else a download with huggingface_hub's own progress bars. Checked before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

from qadvisor.errors import UserError
from qadvisor.quantizers.checkpoint import PART

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
GGUF_REF = re.compile(rf"(?P<repo>{REPO_ID.pattern}):(?P<kind>[\w.-]+)")
# the type at the end of a GGUF file's name (`qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf` → q4_k_m)
GGUF_KIND = re.compile(rf"[-_.](?P<kind>(?:i?q\d\w*|f16|bf16|fp16|f32))(?:{PART})?\.gguf$", re.IGNORECASE)
# what qadvisor reads of a checkpoint: weights, config, tokenizer (not other formats' copies of the weights)
WANTED = ["*.json", "*.safetensors", "*.txt", "tokenizer.model", "merges.txt", "vocab.json"]


def is_repo_id(name: str | None) -> bool:
    """`owner/name` that is not a path on this machine."""
    return bool(name) and (REPO_ID.fullmatch(name) or GGUF_REF.fullmatch(name)) is not None \
        and not Path(name).exists()


def folder_name(folder: Path) -> str:
    """A model folder's name as a person knows it: a cached snapshot (…/models--Qwen--Qwen2.5-7B/snapshots/SHA) is
    its repo's name, not the commit hash."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.split("--")[-1]
    return folder.name


def resolve(name: str | None) -> str | None:
    """A repo id's local snapshot folder, a GGUF reference's file (the first part of a split one); any other name
    unchanged."""
    if not is_repo_id(name):
        return name
    ref = GGUF_REF.fullmatch(name)
    if ref is None:
        folder = _snapshot(name, name, WANTED)
        if not (Path(folder) / "config.json").is_file():
            _gguf_repo_hint(name, folder)
        return folder
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)  # then the cache is all there is: not there, _snapshot says so
    cached = _snapshot(ref["repo"], name, ["*.gguf"], local_only=not offline)
    local = [str(p.relative_to(cached)) for p in Path(cached).rglob("*.gguf")] if cached else []
    files = _of_kind(local, ref, strict=" as cached (HF_HUB_OFFLINE is set)" if offline else "")
    if not files:
        files = _of_kind(_listing(ref["repo"], name), ref, strict=" on the hub")
        cached = _snapshot(ref["repo"], name, files)
    return str(Path(cached) / files[0])


def _gguf_repo_hint(name: str, folder: str) -> None:
    """A repo of GGUF files alone (no config.json to read as a model): one line naming how to ask for one of them."""
    from huggingface_hub import constants

    files = [p.name for p in Path(folder).rglob("*.gguf")]
    if not files and not constants.HF_HUB_OFFLINE:
        try:
            files = [Path(f).name for f in _listing(name, name) if f.endswith(".gguf")]
        except UserError:
            return  # the hub cannot be reached: the folder's own check says what it lacks
    if files:
        kinds = sorted({m["kind"].upper() for f in files if (m := GGUF_KIND.search(f))})
        example = "Q4_K_M" if "Q4_K_M" in kinds or not kinds else kinds[0]
        raise UserError(f"{name}: a repo of GGUF files; name the one to measure by its type, as llama.cpp's -hf does: "
                        f"{name}:{example} (types here: {', '.join(kinds) or ', '.join(files[:4])})")


def _snapshot(repo: str, name: str, patterns: list[str], local_only: bool = False) -> str | None:
    """The repo's snapshot folder with the files `patterns` match, from the cache, else downloaded (None where
    `local_only` and it is not cached)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo, local_files_only=True, allow_patterns=patterns)
    except LocalEntryNotFoundError:
        if local_only:
            return None
        if constants.HF_HUB_OFFLINE:
            raise UserError(f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is "
                            "set, so it cannot be downloaded") from None
    except Exception as exc:  # a damaged cache entry
        raise UserError(f"{name}: unreadable in the Hugging Face cache ({type(exc).__name__}: {exc})") from None
    try:
        return snapshot_download(repo, allow_patterns=patterns)
    except Exception as exc:  # offline, no such repo, gated: one line either way
        raise UserError(f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and not downloadable "
                        f"({type(exc).__name__})") from None


def _listing(repo: str, name: str) -> list[str]:
    """The repo's files on the hub (a GGUF type not in the cache)."""
    from huggingface_hub import HfApi, constants

    try:  # model_info: one request (list_repo_files retries a refused connection for 20 s, logging each try)
        return [f.rfilename for f in HfApi().model_info(repo).siblings or []]
    except Exception as exc:  # offline, no such repo, gated
        raise UserError(f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the repo's files "
                        f"cannot be listed ({type(exc).__name__})") from None


def _of_kind(files: list[str], ref: re.Match, strict: str = "") -> list[str]:
    """The GGUF file of the type `ref` names (every part of a split one, first first), matched as llama.cpp's `-hf`
    does: the type at the end of the file's name, in any case. Two such files, or none where `strict` says where
    the files were listed, is a UserError."""
    ends = re.compile(rf"(?:.*[-_.])?{re.escape(ref['kind'])}(?:{PART})?\.gguf", re.IGNORECASE)
    found = sorted(f for f in files if ends.fullmatch(Path(f).name))
    stems = {re.sub(rf"{PART}\.gguf$", "", f) for f in found}
    if len(stems) > 1:
        raise UserError(f"{ref[0]}: more than one GGUF file of that type ({', '.join(sorted(stems))}); pass the file")
    if strict and not found:
        gguf = sorted(Path(f).name for f in files if f.endswith(".gguf"))
        raise UserError(f"{ref[0]}: no GGUF file of type {ref['kind']} in {ref['repo']}{strict} (it has "
                        f"{', '.join(gguf[:8]) + (', …' if len(gguf) > 8 else '') or 'none'})")
    return found
