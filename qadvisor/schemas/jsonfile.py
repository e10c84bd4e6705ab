"""Reading and writing the JSON files users keep (exports, profiles, configs): one clear error line each."""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ValidationError

from qadvisor.errors import UserError, about


def read_json_object(path: Path, what: str) -> dict:
    """A JSON object from `path`; a missing, unreadable or non-object file is a UserError naming `what`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a {what} (expected a JSON object)")
    return data


def validate_versioned(path: Path, data: dict, model: type[BaseModel], version: int, what: str):
    """Check `schema_version`, then validate; the first bad field is named in the one error line."""
    found = data.get("schema_version")
    if isinstance(found, int) and not isinstance(found, bool) and found > version:
        raise UserError(f"{path}: written by a newer qadvisor ({what} schema_version {found}; this qadvisor "
                        f"reads {version} and older): upgrade qadvisor to read it")
    if found != version:
        raise UserError(f"{path}: {what} schema_version {found!r} is not supported (this qadvisor reads {version})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or what
        raise UserError(f"{path}: field {field!r}: {first['msg'].removeprefix('Value error, ')}") from None


def check_known_fields(path: Path, data: dict, model: type[BaseModel], what: str) -> None:
    """A file the user writes is read strictly: a field the model does not have (a typo, a limit at the wrong
    level) would otherwise be dropped and the run go on without it. One UserError line naming the field."""
    names = _field_paths(model)
    for key in _key_paths(data, model):
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            near = near or [n for n in names if n.rpartition(".")[2].startswith(key.rpartition(".")[2])]
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"{path}: unknown field {key!r} in this {what}{hint} (its fields: {', '.join(names)})")


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths += _field_paths(inner, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def _key_paths(data: dict, model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        inner = field.annotation if field else None
        if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(value, dict):
            keys += _key_paths(value, inner, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def check_output_path(path: Path | None, flag: str) -> None:
    """A file we will write later (an export, a report) must be writable now: a run that measured for minutes
    must not fail at its last step. One UserError line naming the flag."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable")


def check_output_dir(path: Path | None, flag: str) -> None:
    """A folder we will write into later (the kept quantized models): a folder or nothing yet, under one we can
    write in. One UserError line naming the flag."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file; give a folder")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")


def check_output_paths(export: Path | None, report: Path | None) -> None:
    with about("export"):
        check_output_path(export, "--export")
    with about("report"):
        check_output_path(report, "--report")
    if export is not None and report is not None and Path(export).resolve() == Path(report).resolve():
        raise UserError(f"--export and --report are the same file ({export}); give them different names", field="report")


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
