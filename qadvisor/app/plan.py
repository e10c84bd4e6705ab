"""`qadvisor plan`: the planner's estimates and, with `measure`, speeds projected from slices measured here."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, Field, ValidationError

from qadvisor.core import architectures, hub
from qadvisor.core.hardware import detect, where_to_run
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.paths import default_cache_dir
from qadvisor.core.plan import planner
from qadvisor.core.plan.slices import MEASURE_DEFAULT, SliceMeasurement, attach
from qadvisor.errors import UserError, about
from qadvisor.schemas.events import Event
from qadvisor.schemas.method import weights_name
from qadvisor.schemas.plan import Plan


class PlanOptions(BaseModel):
    model: str = "Qwen2.5-72B"
    context: int = Field(2048, ge=1)
    batch: int = Field(1, ge=1)
    prompt_tokens: int | None = Field(None, ge=1)
    target: str = "this"
    methods: list[str] | None = None
    measure: bool = False  # time slices of the model here and project the whole
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    cache_dir: Path | None = None


def options(**values) -> PlanOptions:
    """PlanOptions from a face's input; a value out of range is one UserError line."""
    try:
        return PlanOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        raise UserError(f"--{field.replace('_', '-')}: {err['msg']}", field=field) from None


class PlanJob:
    """Everything checked on creation; `events()` measures (only with `measure`); `plan()` is the answer."""

    def __init__(self, opts: PlanOptions):
        with about("methods"):
            if opts.measure and opts.methods:  # say why slices cannot time a method before the planner's broader no
                from qadvisor.core.plan.slices import check_sliceable

                check_sliceable(opts.methods)
        with about("model"):
            self.arch = architectures.resolve_architecture(hub.resolve(opts.model))
        with about("target"):
            self.target = planner.parse_target(opts.target, threads=opts.threads)
        with about("methods"):
            self.estimate = planner.plan(self.arch, self.target, context=opts.context, batch=opts.batch,
                                         prompt_tokens=opts.prompt_tokens, methods=opts.methods)
        with about("target"):
            self.measurement = _measurement(opts, self.arch, self.target, self.estimate) if opts.measure else None

    def events(self, cancel=None) -> Iterator[Event]:
        if self.measurement is not None:
            yield from self.measurement.events(cancel)

    def plan(self) -> Plan:
        m = self.measurement
        if m is None:
            return self.estimate

        notes = [f"{name}: {r.reason}" for name, rs in m.results.items() for r in rs if r.status != "ok"]
        return attach(self.estimate, m.projections, m.disk_read_gb_s).model_copy(
            update={"measure_notes": notes, "measure_s": m.wall_s})


def plan_here(payload, request_json: str, device: str, options_json: str) -> Iterator[tuple[str, object]]:
    """On a node of a cluster (core.cluster.driver runs it once per hardware kind, after the kind's trials): the --plan-for
    measurement on that node's hardware. Yields ("event", Event) as they come, then ("value", Plan)."""
    opts = PlanOptions.model_validate_json(options_json).model_copy(update={"device": device})
    job = PlanJob(opts)
    for event in job.events():
        yield "event", event
    yield "value", job.plan()


def _measurement(opts: PlanOptions, arch, target, estimate: Plan):
    if opts.target != "this":
        raise UserError(f"--measure times this machine; --target {opts.target} is not here (drop --target, or plan "
                        "without --measure for that GPU's bandwidth bound)")
    if opts.batch != 1:
        raise UserError("--measure times batch 1 (as --auto does); drop --batch or plan without --measure")
    hardware = detect()
    device, threads = where_to_run(opts.device, opts.threads, hardware)
    settings = EvalSettings(device=device, threads=threads,
                            prompt_tokens=estimate.prompt_tokens)
    methods = opts.methods or list(MEASURE_DEFAULT)
    weights = list(dict.fromkeys(weights_name(m) for m in methods))  # a KV stack: its weights on slices
    return SliceMeasurement(arch, weights, hardware, settings, opts.cache_dir or default_cache_dir())
