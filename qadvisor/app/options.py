"""The typed options both faces fill in: what to measure (RunOptions) and what matters (PriorityOptions). Ranges are
Field constraints, so a bad value fails here, in one place, as one line naming the option, before anything runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.errors import UserError
from qadvisor.quantizers import registry
from qadvisor.schemas.limits import LIMITS, parse_size
from qadvisor.schemas.priorities import Priorities, build_priorities

_EVAL = EvalSettings.model_fields


class RunOptions(BaseModel):
    model: str | None = None  # a directory, synthetic:NAME, or None for the bundled model
    # quantized checkpoints (folders or .gguf files) measured as shipped; `model` is then their reference (None: none).
    # The command line's --model CHECKPOINT[,CHECKPOINT] --reference DIR arrive as model and reference (app.auto)
    checkpoints: list[str] = []
    reference: str | None = None
    methods: list[str] = list(registry.DEFAULT_METHODS)
    eval_text: Path | None = None
    calib_text: Path | None = None
    keep_models: Path | None = None
    export: Path | None = None  # written at the end (checked at the start: a run of minutes must not fail last)
    report: Path | None = None
    reuse_cache: bool = True  # False: --no-cache
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    repeats: int = Field(_EVAL["repeats"].default, ge=1)  # the defaults are the measuring core's own
    decode_tokens: int = Field(_EVAL["decode_tokens"].default, ge=2)
    prompt_tokens: int = Field(_EVAL["prompt_tokens"].default, ge=1)
    plan_for: str | None = None  # e.g. Qwen2.5-72B: also advise for that model
    stream: bool = False  # --model DIR measured as a planned model: its accuracy streamed layer by layer (core.measure.streamed)
    target: str = "this"
    target_methods: list[str] | None = None  # measured on slices of plan_for; default: app.auto._target_methods
    cluster: str | None = None  # `local` or HOST:PORT of a Ray cluster: every method on every node (core.cluster.driver)
    pin: dict[str, str] = {}  # method → a Ray resource: that method only on the nodes that have it (e.g. H100s)

    @field_validator("checkpoints", mode="before")
    @classmethod
    def _paths(cls, value):
        """`a,b` as the form's field takes them."""
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("pin", mode="before")
    @classmethod
    def _pairs(cls, value):
        """`gptq-int4=H100,bnb-nf4=A10G` as the faces take it."""
        if not isinstance(value, str):
            return value
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ValueError("write METHOD=RESOURCE[,METHOD=RESOURCE], e.g. gptq-int4=H100")
        return {m.strip(): r.strip() for m, r in pairs}


class _Priorities(BaseModel):
    """A profile (preset name, JSON file, or a saved run's priorities) with weights and limits laid over it: each
    limit an option of the name LIMITS gives it (max_size, min_tok_s, …)."""

    profile: str | Priorities = "balanced"
    storage: float | None = Field(None, ge=0)
    latency: float | None = Field(None, ge=0)
    accuracy: float | None = Field(None, ge=0)
    replace_limits: bool = False  # the TUI's form shows the profile's limits, so a blank field there means none
    accept_unverified_accuracy: bool = False  # Priorities.accept_unverified_accuracy

    def priorities(self) -> Priorities:
        weights = ",".join(f"{k}={v:g}" for k in ("storage", "latency", "accuracy") if (v := getattr(self, k)) is not None)
        limits = {row.field: parse_size(value, field=row.option) if row.size and value else value
                  for row in LIMITS if (value := getattr(self, row.option)) is not None}
        built = build_priorities(self.profile, weights or None, limits, self.replace_limits)
        return built.model_copy(update={"accept_unverified_accuracy": True}) if self.accept_unverified_accuracy else built


# a size limit arrives as text (15MiB, 40GB, or bytes), the others as numbers in their range
PriorityOptions = create_model("PriorityOptions", __base__=_Priorities, **{
    row.option: (str | None, None) if row.size else (float | None, Field(None, **row.bound)) for row in LIMITS})


MIN_MEASURE_S = _EVAL["min_measure_s"].default  # each speed rests on at least this much timing (not an option)


def default(option: str):
    """A RunOptions field's default, as both faces show it (help text, the form's placeholders)."""
    return RunOptions.model_fields[option].default


def names(text: str | None) -> list[str] | None:
    """A comma-separated input's names (blank: None, the default)."""
    return [n.strip() for n in text.split(",") if n.strip()] or None if text else None


def values_from_args(args) -> dict:
    """The command line's run inputs, by RunOptions field: what `--auto` runs with and what the TUI's form is laid
    over (an option the command line lacks is None, the default)."""
    arg = lambda name: getattr(args, name, None)  # noqa: E731
    return dict(model=arg("model"), reference=arg("reference"), methods=names(arg("methods")),
                eval_text=arg("eval_text"), calib_text=arg("calib_text"), keep_models=arg("keep_models"),
                export=arg("export"), report=arg("report"), reuse_cache=not arg("no_cache"), device=arg("device"),
                threads=arg("threads"), repeats=arg("repeats"), decode_tokens=arg("decode_tokens"),
                prompt_tokens=arg("prompt_tokens"), plan_for=arg("plan_for"), stream=arg("stream"),
                target=arg("target"), target_methods=names(arg("target_methods")), cluster=arg("cluster"),
                pin=arg("pin"))


def run_options(prefix: str = "--", **values) -> RunOptions:
    """RunOptions from a face's input (None or '': the default); a value out of range is one UserError line that
    names the option as the face shows it (`prefix`: '--' for the command line, '' for the TUI's fields)."""
    return _checked(RunOptions, values, prefix)


def priority_options(prefix: str = "--", **values) -> PriorityOptions:
    return _checked(PriorityOptions, values, prefix)


def _checked(model: type[BaseModel], values: dict, prefix: str):
    try:
        return model(**{k: v for k, v in values.items() if v is not None and v != ""})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        name = prefix + field.replace("_", "-" if prefix else " ")
        ctx = err.get("ctx", {})
        for key, words in (("ge", "at least"), ("gt", "above")):
            if key in ctx:
                raise UserError(f"{name} must be {words} {ctx[key]}", field=field) from None
        raise UserError(f"{name}: {err['msg'].removeprefix('Value error, ')}", field=field) from None
