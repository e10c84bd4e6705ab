"""Hugging Face repo ids (`Qwen/Qwen2.5-7B-Instruct`) as model folders: the local Hugging Face cache first (HF_HOME,
HF_HUB_OFFLINE honoured), else a download with huggingface_hub's own progress bars. Checked before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

from qadvisor.errors import UserError

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# what qadvisor reads of a checkpoint: weights, config, tokenizer (not other formats' copies of the weights)
WANTED = ["*.json", "*.safetensors", "*.txt", "tokenizer.model", "merges.txt", "vocab.json"]


def is_repo_id(name: str | None) -> bool:
    """`owner/name` that is not a path on this machine."""
    return bool(name) and REPO_ID.fullmatch(name) is not None and not Path(name).exists()


def folder_name(folder: Path) -> str:
    """A model folder's name as a person knows it: a cached snapshot (…/models--Qwen--Qwen2.5-7B/snapshots/SHA) is
    its repo's name, not the commit hash."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.split("--")[-1]
    return folder.name


def resolve(name: str | None) -> str | None:
    """A repo id's local snapshot folder; any other name unchanged."""
    if not is_repo_id(name):
        return name
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True, allow_patterns=WANTED)
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise UserError(f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is "
                            "set, so it cannot be downloaded") from None
    except Exception as exc:  # a damaged cache entry
        raise UserError(f"{name}: unreadable in the Hugging Face cache ({type(exc).__name__}: {exc})") from None
    try:
        return snapshot_download(name, allow_patterns=WANTED)
    except Exception as exc:  # offline, no such repo, gated: one line either way
        raise UserError(f"{name}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and not downloadable "
                        f"({type(exc).__name__})") from None
