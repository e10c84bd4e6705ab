"""The saved run: versioned, validated on load, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ValidationError

from qadvisor.errors import UserError
from qadvisor.models.hardware import HardwareInfo
from qadvisor.models.plan import Plan, PlanCheck
from qadvisor.models.priorities import Priorities
from qadvisor.models.recommendation import Recommendation
from qadvisor.models.result import TrialResult

SCHEMA_VERSION = 1


class ModelInfo(BaseModel):
    name: str
    path: str
    params: int
    bf16_bytes: int  # the model's weights saved in bf16 (measured): the baseline for compression
    ref_ppl: float | None  # fp32 perplexity on the evaluation text; None for random (synthetic) weights
    eval_tokens: int  # tokens scored for the accuracy metrics


class RunSettings(BaseModel):
    prompt_tokens: int
    decode_tokens: int
    repeats: int
    threads: int
    device: str


class RunExport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    qadvisor_version: str
    created_at: str
    hardware: HardwareInfo
    model: ModelInfo
    settings: RunSettings
    results: list[TrialResult]
    priorities: Priorities | None = None
    recommendation: Recommendation | None = None
    plan: Plan | None = None  # --plan-for: the planner's estimate for a deployment target
    plan_check: list[PlanCheck] = []  # the planner's predicted weight bytes next to the measured ones


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_export(export: RunExport, path: Path) -> None:
    write_text_atomic(path, export.model_dump_json(indent=2) + "\n")


def load_export(path: Path) -> RunExport:
    """Read a saved run; every way it can be wrong becomes one UserError line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON export ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a qadvisor export (expected a JSON object)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version {version!r} is not supported (this qadvisor reads {SCHEMA_VERSION})")
    try:
        return RunExport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise UserError(f"{path}: field {field!r}: {first['msg']}") from None
