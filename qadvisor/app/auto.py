"""A measuring session, as `--auto` and the TUI run it: the proxy model's trials, then (with `plan_for`) slices of
the planned model, and one export with the advice for both. Everything is checked when the session is created."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator

from qadvisor import format as f
from qadvisor.app.advice import readvise
from qadvisor.app.options import RunOptions
from qadvisor.app.plan import PlanJob, PlanOptions, plan_here
from qadvisor.app.report import write_run
from qadvisor.core import hub
from qadvisor.core.architectures import resolve_architecture
from qadvisor.core.cluster.driver import ClusterRequest, ClusterRun, KindStep
from qadvisor.core.hardware import detect, where_to_run
from qadvisor.core.measure import evaltext, memory, modelio
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.modelio import SYNTHETIC_PREFIX, bundled_model_dir
from qadvisor.core.measure.runner import Run, RunRequest
from qadvisor.core.measure.session import Session
from qadvisor.core.measure.streamed import StreamJob
from qadvisor.core.paths import default_cache_dir
from qadvisor.core.plan.plancheck import predicted_vs_measured
from qadvisor.core.plan.planner import formats
from qadvisor.core.plan.slices import sliceable
from qadvisor.errors import UserError, about
from qadvisor.quantizers import checkpoint, mixsolver, registry
from qadvisor.schemas.events import Event
from qadvisor.schemas.export import RunExport, save_export
from qadvisor.schemas.jsonfile import check_output_dir, check_output_paths
from qadvisor.schemas.method import weights_name
from qadvisor.schemas.priorities import Priorities

# Slices at 72B cost minutes a method here: by default the planned model's slices time a spread over the archetypes.
TARGET_DEFAULT = ("bnb-nf4", "quanto-int4", "torchao-int8", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k")


def _target_methods(opts: RunOptions) -> list[str]:
    """The proxy's methods that slices can time: the ones asked for, else the default spread among them."""
    if opts.target_methods:
        missing = [m for m in opts.target_methods if m not in opts.methods]
        if missing:
            raise UserError(f"target methods: {', '.join(missing)} not among the methods to try, so there is no "
                            "accuracy to pair with", field="target_methods")
        return opts.target_methods
    chosen = [m for m in opts.methods if weights_name(m) in TARGET_DEFAULT] or [m for m in opts.methods if sliceable(m)]
    if not chosen:
        raise UserError(f"target methods: none of the methods to try can be timed on slices of {opts.plan_for} "
                        "(the planner has no entry for them)", field="target_methods")
    return chosen


def _gpu_methods(opts: RunOptions) -> list[str] | None:
    """What the planner sizes for a GPU target: every format (None), and the run's KV stacks beside them."""
    stacks = [m for m in opts.methods if "+" in m]
    return list(formats()) + stacks if stacks else None


def with_mix_budget(opts: RunOptions, priorities: Priorities, say: Callable[[str], None]) -> RunOptions:
    """`gguf-mix` without a budget takes --max-size's; with --max-size and the default methods, a mix made for it joins
    them (where the model can be that small: else the run says why not)."""
    size = priorities.limits.max_size_bytes
    bare = mixsolver.NAME
    if bare in opts.methods:
        if size is None:
            raise UserError(f"{bare} takes its budget from --max-size; give one, or name it: {bare}@4.5bpw, "
                            f"{bare}@40GiB, {bare}@kl0.01", field="max_size")
        return opts.model_copy(update={"methods": [f"{bare}@{size}" if m == bare else m for m in opts.methods]})
    random_weights = str(opts.model or "").startswith(SYNTHETIC_PREFIX)  # no accuracy to spend the budget on
    if size is None or opts.methods != list(registry.DEFAULT_METHODS) or opts.checkpoints or random_weights:
        return opts
    name = f"{mixsolver.PREFIX}{size}"
    try:
        registry.check_for_model(registry.parse_methods(name), resolve_architecture(str(opts.model or bundled_model_dir())))
    except UserError as exc:
        say(f"no GGUF mix for --max-size: {exc}")
        return opts
    say(f"{name} joins the default methods: a GGUF made for --max-size from this model's measured sensitivity")
    return opts.model_copy(update={"methods": [*opts.methods, name]})


def with_unstacked(opts: RunOptions, say: Callable[[str], None]) -> RunOptions:
    """Each KV stack measured beside its weights alone (added when not asked for): the cache's effect on size, speed
    and accuracy is the difference between the two, measured side by side."""
    methods = []
    for recipe in registry.parse_methods(",".join(opts.methods)):  # a stack that cannot be is refused here
        weights = recipe.weights.name
        if recipe.kv is not None and weights not in opts.methods and weights not in methods:
            methods.append(weights)
            say(f"{weights} added beside {recipe.name}: the KV cache's effect is the difference between them")
        methods.append(recipe.name)
    return opts if methods == opts.methods else opts.model_copy(update={"methods": methods})


def as_checkpoints(opts: RunOptions) -> RunOptions:
    """`--model CHECKPOINT[,CHECKPOINT…] [--reference DIR]`: quantized checkpoints (.gguf files, or folders whose
    config.json has a quantization_config) are measured as shipped, side by side, against DIR; the methods then run
    only when asked for."""
    model = opts.model or ""
    parts = [hub.resolve(p.strip()) for p in model.split(",") if p.strip()]
    if (not opts.checkpoints and parts and not model.startswith(SYNTHETIC_PREFIX)
            and all(checkpoint.is_checkpoint(p) for p in parts)):
        opts = opts.model_copy(update={"checkpoints": parts, "model": opts.reference, "reference": None})
    elif opts.reference:
        raise UserError(f"--reference is the unquantized model a quantized checkpoint is compared with, and --model "
                        f"{opts.model or '(the bundled model)'} is not one (a .gguf file, or a folder whose config.json "
                        "has a quantization_config)", field="model")
    if not opts.checkpoints:
        return opts.model_copy(update={"model": hub.resolve(opts.model)})
    if opts.stream or opts.plan_for or opts.cluster:
        given = "--stream" if opts.stream else "--plan-for" if opts.plan_for else "--cluster"
        raise UserError(f"{given} works on an unquantized model; a quantized checkpoint is measured as shipped here, "
                        "on this machine: drop one of them", field="checkpoints")
    methods = opts.methods if "methods" in opts.model_fields_set else []
    return opts.model_copy(update={"checkpoints": [hub.resolve(p) for p in opts.checkpoints],
                                   "model": hub.resolve(opts.model), "methods": methods})


def _stream_job(opts: RunOptions, methods: list[str], settings, left_out: dict[str, str]):
    """`--plan-for DIR` with weights: the planned model's own accuracy, streamed one layer at a time (core.measure.streamed)."""
    folder = Path(opts.plan_for)
    if not (folder.is_dir() and any(folder.glob("*.safetensors"))):
        return None
    measured = Path(opts.model) if opts.model else modelio.bundled_model_dir()
    if measured.is_dir() and folder.resolve() == measured.resolve():
        return None  # the whole-model trials measure this very model: its accuracy is theirs
    text = evaltext.choose(folder, opts.eval_text, default_cache_dir())
    calib, _ = modelio.text_for(folder, modelio.CALIB_FILE, opts.calib_text)
    return StreamJob(folder, methods, Path(text.path), settings, calib_text=calib, left_out=left_out, text=text)


def as_streamed_target(opts: RunOptions, say: Callable[[str], None]) -> RunOptions:
    """`--model DIR --stream`, or a DIR too large for whole-model trials here: DIR becomes the planned model, its accuracy
    streamed layer by layer, its size and speed from the planner and slices; the whole-model trials run on the bundled
    model."""
    import psutil

    folder = Path(opts.model) if opts.model and not opts.model.startswith(modelio.SYNTHETIC_PREFIX) else None
    if folder is None or not folder.is_dir():
        if opts.stream:
            raise UserError("--stream measures a checkpoint folder one layer at a time: pass --model DIR", field="model")
        return opts
    config = modelio.check_model_dir(folder)
    need = memory.floor_bytes(modelio.stored_params(folder), config["vocab_size"])
    free = psutil.virtual_memory().available
    if not opts.stream and need <= free:
        return opts
    if opts.plan_for:
        raise UserError(f"--plan-for {opts.plan_for}: streaming makes --model {folder} the planned model; drop one of them", field="plan_for")
    if folder.resolve() == modelio.bundled_model_dir().resolve():
        say(f"--stream: {folder.name} is the bundled model, which the whole-model trials measure exactly: nothing "
            "is streamed")
        return opts.model_copy(update={"stream": False})
    why = "--stream" if opts.stream else (f"{folder.name} needs about {f.gib(need)} for whole-model trials, "
                                          f"{f.gib(free)} available")
    say(f"{why}: {folder.name}'s accuracy is streamed one layer at a time; its size and speed come from the planner and "
        "slices; the whole-model trials run on the bundled model")
    return opts.model_copy(update={"model": None, "plan_for": str(folder), "stream": False})


def _on_cluster(run, opts: RunOptions, plan_options, say: Callable[[str], None]):
    """The checked local run, measured on every node of a Ray cluster instead of here; `plan_options` (--plan-for
    measured on slices): once per hardware kind, on one node of the kind."""
    per_kind = KindStep(plan_here, (plan_options.model_dump_json(),)) if plan_options is not None else None
    cluster = ClusterRun(run, ClusterRequest(address=opts.cluster, device=opts.device, threads=opts.threads,
                                             pins=opts.pin or {}, per_kind=per_kind))
    for kind, nodes in cluster.kinds().items():
        say(f"cluster: {len(nodes)} node(s) of {kind}: {', '.join(n.label for n in nodes)}")
    return cluster


# PlanOptions' fields as a session's options name them (a UserError's field)
PLAN_FIELDS = {"model": "plan_for", "methods": "target_methods"}


def checked_inputs(opts: RunOptions, priorities: Priorities, say: Callable[[str], None]) -> RunOptions:
    """The options as the session runs them (checkpoints, a streamed model, a mix's budget, KV stacks' weights
    alone), each input checked first; a UserError names the input it is about."""
    check_output_paths(opts.export, opts.report)  # a run of minutes must not fail at its last step
    with about("keep_models"):
        check_output_dir(opts.keep_models, "--keep-models")
    if opts.pin and not opts.cluster:
        raise UserError("--pin places methods on the nodes of a Ray cluster: it needs --cluster", field="pin")
    with about("checkpoints"):
        opts = as_checkpoints(opts)
    with about("plan_for"):
        opts = opts.model_copy(update={"plan_for": hub.resolve(opts.plan_for)})
    with about("model"):
        opts = opts if opts.checkpoints else as_streamed_target(opts, say)
    with about("methods"):
        return with_unstacked(with_mix_budget(opts, priorities, say), say) if opts.methods else opts


class AutoSession:
    """One `--auto` (or TUI) session: created checked, `events()` measures, `export()` is the answer."""

    def __init__(self, opts: RunOptions, priorities: Priorities, say: Callable[[str], None] = lambda line: None):
        opts = checked_inputs(opts, priorities, say)
        self.opts = opts
        self.priorities = priorities
        self.plan_job, plan_options = None, None
        if opts.plan_for:  # target checks first: they are cheap and need no measuring
            measure = opts.target == "this"
            plan_options = PlanOptions(model=opts.plan_for, target=opts.target, measure=measure,
                                       methods=_target_methods(opts) if measure else _gpu_methods(opts),
                                       device=opts.device,
                                       threads=opts.threads, prompt_tokens=opts.prompt_tokens)
            with about("plan_for", renamed=PLAN_FIELDS):  # on a cluster: checked here, measured on each kind's node
                self.plan_job = PlanJob(plan_options)
        self.hardware = detect()
        device, threads = where_to_run(opts.device, opts.threads, self.hardware)
        settings = EvalSettings(device=device, threads=threads,
                                repeats=opts.repeats, decode_tokens=opts.decode_tokens, prompt_tokens=opts.prompt_tokens)
        request = RunRequest(model_dir=opts.model, checkpoints=opts.checkpoints, methods=opts.methods, eval_text=opts.eval_text,
                             calib_text=opts.calib_text, settings=settings, work_dir=opts.keep_models,
                             reuse_cache=opts.reuse_cache)
        self.run: Session = Run(request, self.hardware, say)
        self.stream_job = None
        if opts.plan_for:
            streamed = (plan_options.methods if plan_options.measure else None) or opts.methods
            left_out = {m: "not a target method (those are streamed and timed on slices; add it with --target-methods)"
                        for m in opts.methods if m not in streamed and m != "fp32"}  # fp32: the reference
            self.stream_job = _stream_job(opts, streamed, settings, left_out)
        # --plan-for measured on a cluster: slices timed on one node of each hardware kind, by the cluster run
        self.plans_per_kind = bool(opts.cluster and self.plan_job is not None and self.plan_job.measurement)
        if opts.cluster:
            with about("cluster"):
                self.run = _on_cluster(self.run, opts, plan_options if self.plans_per_kind else None, say)

    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        cancel = cancel or threading.Event()
        yield from self.run.events(cancel)
        if self.plan_job is not None and not self.plans_per_kind and not cancel.is_set():
            yield from self.plan_job.events(cancel)
        if self.stream_job is not None and not cancel.is_set():
            yield from self.stream_job.events(cancel)

    def trial_names(self) -> list[str]:
        return self.run.trial_names()

    def measured_after(self) -> str | None:
        """The --plan-for model measured after the trials (on slices, or streamed layer by layer), or None."""
        later = self.plan_job is not None and (self.plan_job.measurement or self.stream_job)
        return self.plan_job.arch.name if later else None

    def trials(self) -> int:
        """How many results `events()` will yield: one per method here (and node, on a cluster), one per method and
        depth on slices."""
        m = self.plan_job.measurement if self.plan_job is not None else None
        slices = len(m.methods) * len(m.depths) if m is not None else 0  # this machine's depths: an estimate elsewhere
        return len(self.run.trial_names()) + slices * (len(self.run.kinds()) if self.plans_per_kind else 1)

    def measured(self) -> bool:
        """Whether there is anything to export: the reference step finished (a stop before it leaves nothing)."""
        return self.run.reference is not None

    def export(self) -> RunExport:
        """The results so far, advised; after a stop, what finished (`complete` false, `cut` says what was not)."""
        export = self.run.export()
        s = export.settings  # the planner's prediction beside each measured size: where it was wrong shows here
        export.plan_check = predicted_vs_measured(Path(export.model.path), export.results,
                                                  s.prompt_tokens + s.decode_tokens - 1, s.prompt_tokens)
        if self.plan_job is not None and not self.plans_per_kind:
            export.plan = self.plan_job.plan()  # per kind: in export.kinds, from the cluster run
        streamed = self.stream_job.result() if self.stream_job is not None else None
        if streamed is not None and (streamed.ref_ppl is not None or streamed.error):  # a stop before the reference: none
            export.streamed = streamed
        return readvise(export, self.priorities, with_target=self.plan_job is not None)

    def autosave(self, export: RunExport) -> Path:
        """Keep the run where the next session finds it (the TUI saves every run it ends, finished or stopped, so a
        quit never loses results): $QADVISOR_CACHE/runs/TIME-MODEL.json."""
        stamp = export.created_at[:19].replace(":", "").replace("-", "")
        path = default_cache_dir() / "runs" / f"{stamp}-{export.model.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_export(export, path)
        return path

    def write(self, export: RunExport) -> list[str]:
        """Write the export and the report the options asked for; returns what was written."""
        return write_run(export, self.opts.export, self.opts.report)
