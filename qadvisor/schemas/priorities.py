"""What the user cares about: weights for storage, latency and accuracy, and hard limits. Presets are data."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from qadvisor.bundled import bundled_dir
from qadvisor.errors import UserError
from qadvisor.schemas.jsonfile import check_known_fields, read_json_object, validate_versioned
from qadvisor.schemas.limits import LIMITS, Limits

PROFILE_SCHEMA_VERSION = 1
PROFILES_DIR = bundled_dir("profiles")


class Priorities(BaseModel):
    schema_version: int = PROFILE_SCHEMA_VERSION
    name: str = "custom"
    description: str = ""
    storage: float = Field(1.0, ge=0)
    latency: float = Field(1.0, ge=0)
    accuracy: float = Field(1.0, ge=0)
    limits: Limits = Limits()
    # --plan-for: a method whose loss at the planned model's size nobody published may be picked, on the proxy's accuracy
    accept_unverified_accuracy: bool = False

    @model_validator(mode="after")
    def _some_weight(self):
        if self.storage + self.latency + self.accuracy <= 0:
            raise ValueError("at least one of storage, latency, accuracy must be above 0")
        return self

    def weights(self) -> dict[str, float]:
        """The three weights normalised to sum to 1."""
        total = self.storage + self.latency + self.accuracy
        return {"storage": self.storage / total, "latency": self.latency / total, "accuracy": self.accuracy / total}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(name_or_path: str) -> Priorities:
    """A preset name from profiles/ or a JSON file; every problem becomes one UserError line."""
    path = Path(name_or_path)
    if not path.suffix and (PROFILES_DIR / f"{name_or_path}.json").is_file():
        path = PROFILES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise UserError(f"unknown profile {name_or_path!r}: use one of {', '.join(preset_names())} or a JSON file")
    data = read_json_object(path, "JSON profile")
    check_known_fields(path, data, Priorities, "profile")
    return validate_versioned(path, data, Priorities, PROFILE_SCHEMA_VERSION, "profile")


def parse_weights(text: str) -> dict[str, float]:
    """`storage=3,latency=1,accuracy=2` → weights; unknown keys and bad numbers are UserErrors."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("storage", "latency", "accuracy"):
            raise UserError(f"--priorities: {part!r}; write storage=N,latency=N,accuracy=N")
        try:
            weights[key] = float(value)
        except ValueError:
            raise UserError(f"--priorities: {value!r} is not a number") from None
        if weights[key] < 0:
            raise UserError(f"--priorities: {key} must not be negative")
    return weights


def build_priorities(profile: str | Priorities, weights: str | None = None, limits: dict | None = None,
                     replace_limits: bool = False) -> Priorities:
    """A profile (a preset name, a JSON file, or priorities already built, e.g. a saved run's) with weights
    (`storage=3,…`) and limits laid over it; bad values become one UserError line.

    `replace_limits` drops the profile's own limits first (the TUI form shows them, so blank means none).
    """
    base = profile if isinstance(profile, Priorities) else load_profile(profile)
    data = base.model_dump()
    changed = {k: v for k, v in parse_weights(weights or "").items() if v != data[k]}
    if changed:  # the profile's own weights given again leave it as it was
        data.update(changed)
        data["name"] = base.name if base.name.endswith("(custom weights)") else f"{base.name} (custom weights)"
    if replace_limits:
        data["limits"] = {}
    data["limits"].update({k: v for k, v in (limits or {}).items() if v is not None})
    try:
        return Priorities.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "weights"  # a check across fields: the weights together
        option = OPTION_OF.get(str(first["loc"][-1]) if first["loc"] else "storage")
        raise UserError(f"{field}: {first['msg'].removeprefix('Value error, ')}", field=option) from None


# a Priorities field → the option that sets it (app.options.PriorityOptions), for an error to point at
OPTION_OF = {"storage": "storage", "latency": "latency", "accuracy": "accuracy",
             **{row.field: row.option for row in LIMITS}}
