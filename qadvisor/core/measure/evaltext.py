"""Which text the accuracy is scored on, and whether the model measured was held out from it.

The bundled model was trained on Python standard-library source and never saw its held-out split; a Qwen
checkpoint has most likely seen that source, so on it the same text is no held-out text. A real checkpoint is
scored on wikitext-2's test split (the text Qwen's and llama.cpp's published perplexities use) where the Hugging
Face cache has it or the hub can be reached, else on the bundled text, labelled for what it is.
"""

from __future__ import annotations

import hashlib
import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from qadvisor.core.measure import modelio
from qadvisor.errors import UserError
from qadvisor.schemas.export import EvalText
from qadvisor.schemas.jsonfile import write_text_atomic

WIKITEXT_REPO = "Salesforce/wikitext"
WIKITEXT_FILE = "wikitext-2-raw-v1/test-00000-of-00001.parquet"
WIKITEXT = (f"wikitext-2's test split ({WIKITEXT_REPO}, wikitext-2-raw-v1), the text Qwen's and llama.cpp's "
            "published perplexities use")
BUNDLED_TEXT = "the bundled model's held-out text (Python standard-library source)"


def choose(model_dir: Path, override: Path | None, cache_root: Path, say=lambda line: None) -> EvalText:
    """The evaluation text for `model_dir`: the user's (--eval-text), the bundled model's own held-out split, the
    model folder's own heldout.txt, wikitext-2, or the bundled text labelled as not held out."""
    model_dir = Path(model_dir)
    if override is not None:
        path = modelio.text_for(model_dir, modelio.EVAL_FILE, override)[0]
        return EvalText(path=str(path), source=f"your text ({path.name}, --eval-text)", held_out="unknown")
    path = modelio.text_for(model_dir, modelio.EVAL_FILE)[0]
    if is_bundled_model(model_dir):
        return EvalText(path=str(path), source="the bundled model's held-out split", held_out="yes")
    if modelio.is_synthetic(model_dir):
        return EvalText(path=str(path), source=f"{BUNDLED_TEXT}, on random weights", held_out="no")
    if path.parent == model_dir and _digest(path) != _digest(modelio.bundled_model_dir() / modelio.EVAL_FILE):
        return EvalText(path=str(path), source=f"{model_dir.name}'s own {modelio.EVAL_FILE}", held_out="unknown")
    wiki, why = wikitext(Path(cache_root), say)
    if wiki is not None:
        return EvalText(path=str(wiki), source=WIKITEXT, held_out="unknown")
    return EvalText(path=str(path), source=f"{BUNDLED_TEXT}, which {model_dir.name} has likely trained on",
                    held_out="no", why=f"wikitext-2 not used: {why}; give your own text with --eval-text")


def for_run(model_dir: Path, override: Path | None, cache_root: Path, scored: bool,
            say=lambda line: None) -> tuple[Path, EvalText | None]:
    """The text's path and what it is; a run that scores no accuracy needs a text only for its prompts."""
    if not scored:
        return modelio.text_for(model_dir, modelio.EVAL_FILE, override)[0].resolve(), None
    text = choose(model_dir, override, cache_root, say)
    return Path(text.path).resolve(), text


def is_bundled_model(model_dir: Path) -> bool:
    """The bundled model itself or a byte-identical copy of its weights: the one model its split is held out from."""
    bundled = modelio.bundled_model_dir()
    if Path(model_dir).resolve() == bundled.resolve():
        return True
    ours = sorted(bundled.glob("*.safetensors"))
    theirs = sorted(Path(model_dir).glob("*.safetensors"))
    if [p.name for p in ours] != [p.name for p in theirs] or any(
            a.stat().st_size != b.stat().st_size for a, b in zip(ours, theirs)):
        return False
    return all(_digest(a) == _digest(b) for a, b in zip(ours, theirs))


def wikitext(cache_root: Path, say=lambda line: None) -> tuple[Path | None, str]:
    """wikitext-2's test split as one text file (its rows joined, as llama.cpp's wiki.test.raw holds them): from the
    Hugging Face cache, else downloaded once unless HF_HUB_OFFLINE is set or the hub cannot be reached."""
    out = cache_root / "eval-texts" / "wikitext-2-raw-v1-test.txt"
    if out.is_file():
        return out, ""
    parquet, why = _parquet(say)
    if parquet is None:
        return None, why
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet, columns=["text"]).column("text").to_pylist()
    write_text_atomic(out, "".join(row or "" for row in rows))
    return out, ""


def _parquet(say) -> tuple[Path | None, str]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(WIKITEXT_REPO, WIKITEXT_FILE, repo_type="dataset", local_files_only=True)), ""
    except LocalEntryNotFoundError:
        pass
    if constants.HF_HUB_OFFLINE:
        return None, f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"
    if not _reachable(constants.ENDPOINT):
        return None, f"not in the Hugging Face cache and {constants.ENDPOINT} cannot be reached"
    say(f"downloading wikitext-2's test split from {WIKITEXT_REPO} (once; about 0.7 MB) to score accuracy on")
    try:
        return Path(hf_hub_download(WIKITEXT_REPO, WIKITEXT_FILE, repo_type="dataset")), ""
    except Exception as exc:  # any hub failure leaves the labelled fallback, never a failed run
        return None, f"the download failed ({type(exc).__name__})"


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """One TCP connection, so a machine without a network falls back at once instead of after the hub's retries."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@lru_cache(maxsize=64)
def _digest_of(path: str, size: int, mtime: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _digest(path: Path) -> str:
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    return _digest_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
