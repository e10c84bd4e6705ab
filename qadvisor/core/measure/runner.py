"""Run the reference step and one trial per method, each in a fresh child process, yielding events: the CLI's
`--auto` prints them and the TUI renders them (one generator, two faces)."""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from pydantic import BaseModel

from qadvisor import __version__
from qadvisor.core import architectures, pace, paths
from qadvisor.core.contention import marked
from qadvisor.core.hardware import fast_bf16
from qadvisor.core.hub import folder_name
from qadvisor.core.measure import artifacts, checkpoints, evaltext, gguf_reference, history, memory, modelio
from qadvisor.core.measure.forkserver import ForkServer
from qadvisor.core.measure.jobs import EvalSettings, Job, Reference
from qadvisor.core.measure.processes import spawn, trial_env
from qadvisor.core.measure.worker import REFERENCE_FILE
from qadvisor.errors import UserError, about
from qadvisor.quantizers import fallback, registry
from qadvisor.quantizers.base import weights_bytes_on_disk
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.events import Error, Event, Progress, Result
from qadvisor.schemas.export import ModelInfo, RunExport, RunSettings
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.method import Recipe
from qadvisor.schemas.result import TrialResult


class RunRequest(BaseModel):
    model_dir: str | None = None  # a directory, `synthetic:Qwen2.5-0.5B`, or None for the bundled model
    # quantized checkpoints measured as they are (folders or .gguf files); model_dir is then their reference, or None
    checkpoints: list[str] = []
    methods: list[str] = list(registry.DEFAULT_METHODS)
    eval_text: Path | None = None
    calib_text: Path | None = None
    settings: EvalSettings = EvalSettings()
    cache_dir: Path | None = None
    work_dir: Path | None = None  # keep the quantized models here; None: a temporary folder
    reuse_cache: bool = True  # False (--no-cache): the reference and every method computed again, the cache refreshed
    warm_start: bool = True  # CPU trial processes forked from one that imported torch once (core.measure.forkserver)
    trial_timeout_s: float = 1800.0


class Run:
    """One measuring run: checked on creation (bad input raises UserError before anything starts)."""

    def __init__(self, request: RunRequest, hardware: HardwareInfo, say: Callable[[str], None] = lambda line: None):
        self.request = request
        self.say = say  # a line for the user before a long step that is not a trial (building a synthetic model)
        self.hardware = hardware
        with about("checkpoints"):
            self.checkpoints = checkpoints.describe_all(request.checkpoints)
        self.unreferenced = bool(self.checkpoints) and not request.model_dir  # size and speed only
        with about("methods"):
            self.recipes = self._recipes()
        cache_root = request.cache_dir or paths.default_cache_dir()
        self.cache_root = Path(cache_root)
        self.log_dir: Path | None = None  # made at the first trial (artifacts.new_log_dir)
        with about("model"):
            self.model_dir, self.config = self._checked_model(cache_root)
        with about("methods"):
            registry.check_for_model(self.recipes, Architecture.from_config(self.model_dir.name, self.config))
        self.artifacts_dir = (cache_root / "artifacts").resolve()
        self.probe_dir = paths.probe_dir(cache_root)
        self.keeps_models = artifacts.model_bytes(self.model_dir) <= artifacts.MAX_MODEL_BYTES  # in the cache
        weights = {r.weights.name: r.weights.bits for r in self.recipes if r.weights.source is None}
        modelio.check_disk(self.model_dir, list(weights.values()), self.artifacts_dir if self.keeps_models else None,
                           Path(request.work_dir or tempfile.gettempdir()))
        if self.unscored:
            request = request.model_copy(update={"settings": request.settings.model_copy(update={"score_accuracy": False})})
            self.request = request
        s = request.settings
        self._check_texts(cache_root)
        key = modelio.fingerprint(self.model_dir, self.eval_path.read_text(encoding="utf-8"), str(s.window), str(s.windows),
                                  str(s.score_accuracy))
        self.cache_dir = (cache_root / "reference" / key).resolve()
        self.device_label = hardware.label(s.device, s.threads)
        self.model_hash: str | None = None  # the model's content hash, computed at the first trial (artifacts)
        self.reference: Reference | None = None
        self.reference_given = False  # a cluster node: its kind's reference, sent into cache_dir by another node
        self.reference_s: float | None = None  # the reference step, when it ran (not from the cache)
        self.results: list[TrialResult] = []
        self.forkserver: ForkServer | None = None

        self.fast_bf16 = fast_bf16()  # one answer for the trials' work dtype and the cache keys that record it

    def _check_texts(self, cache_root: Path) -> None:
        """The evaluation and calibration texts, and the lengths the settings need from them and from the model."""
        s = self.request.settings
        with about("eval_text"):  # the context check names its own fields (prompt_tokens, model)
            self.eval_path, self.eval_text = evaltext.for_run(self.model_dir, self.request.eval_text, cache_root,
                                                              s.score_accuracy, self.say)
            modelio.check_context(self.model_dir, self.config, s.window, s.prompt_tokens, s.decode_tokens)
            modelio.check_eval_length(self.model_dir, self.eval_path, s.window, s.windows, s.prompt_tokens)
        with about("calib_text"):
            self.calib_path = modelio.text_for(self.model_dir, modelio.CALIB_FILE, self.request.calib_text)[0].resolve()
            calib_tokens = max((registry.backend_for(r.weights).calib_min_tokens for r in self.recipes
                                if registry.backend_for(r.weights).calibrates(r.weights)), default=0)
            if calib_tokens and s.score_accuracy:  # random weights round to nearest instead of calibrating
                modelio.check_calib_text(self.model_dir, self.calib_path, calib_tokens)

    def _recipes(self) -> list[Recipe]:
        """The checkpoints measured as shipped, if any, then the methods asked for (none besides checkpoints: they
        alone)."""
        own = [Recipe(parts=(spec,)) for spec in self.checkpoints]
        if own and not self.request.methods:
            return own
        return own + registry.parse_methods(",".join(self.request.methods))

    @property
    def unscored(self) -> bool:
        """No accuracy to score: random weights, or a checkpoint without its unquantized model."""
        return self.unreferenced or modelio.is_synthetic(self.model_dir)

    def _checked_model(self, cache_root: Path) -> tuple[Path, dict]:
        """The model to measure, once RAM holds the reference step and every trial (on CPU); a synthetic one checked
        before it is built, a checkpoint against its reference or alone."""
        request = self.request
        backends = {r.name: r.weights.backend for r in self.recipes if r.weights.source is None}
        if self.unreferenced:
            if len(self.recipes) > len(self.checkpoints):
                raise UserError("--methods quantize the unquantized model: pass it with --reference DIR, or measure "
                                "the checkpoints alone")
            checkpoints.check_together(self.checkpoints)
            folder = checkpoints.stand_in(self.checkpoints[0], cache_root, self.say)
            config = modelio.read_config(folder)
            self._check_as_shipped_memory(config, 0)
            return folder, config
        cpu = request.settings.device == "cpu"
        if request.model_dir and str(request.model_dir).startswith(modelio.SYNTHETIC_PREFIX):
            if self.checkpoints:
                raise UserError(f"--reference {request.model_dir} has random weights, so no checkpoint was made from it")
            arch = modelio.check_synthetic(str(request.model_dir))
            if cpu:
                memory.check(backends, architectures.param_count(arch), arch.vocab_size, 0)  # random weights: nothing scored
            self.say(f"{request.model_dir}: random weights at the real shape (built once, then cached)")
            model_dir = modelio.build_synthetic(arch, cache_root).resolve()
            return model_dir, modelio.check_model_dir(model_dir)
        model_dir = (Path(request.model_dir) if request.model_dir else modelio.bundled_model_dir()).resolve()
        s = request.settings
        scored = s.windows * s.window if s.score_accuracy and not modelio.is_synthetic(model_dir) else 0
        if self.checkpoints and gguf_reference.is_gguf(model_dir):  # an F16 GGUF beside its quantized files
            room = (lambda params, vocab: memory.check({"the reference": "torch"}, params, vocab, scored)) if cpu \
                else (lambda params, vocab: None)
            model_dir = gguf_reference.as_folder(model_dir, cache_root, self.say, room)
        config = modelio.check_model_dir(model_dir)
        if self.checkpoints:
            checkpoints.check_reference(self.checkpoints, model_dir)
        if cpu:
            modelio.check_memory(model_dir, config, backends, scored)
            self._check_as_shipped_memory(config, scored)
        return model_dir, config

    def _check_as_shipped_memory(self, config: dict, scored_tokens: int) -> None:
        if self.request.settings.device != "cpu":
            return

        for spec in self.checkpoints:
            memory.check_as_shipped(spec.name, weights_bytes_on_disk(Path(spec.source)), config.get("vocab_size", 0),
                                 scored_tokens)

    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Yield progress, metric, result and error events; a failing method never stops the run."""
        cancel = cancel or threading.Event()
        keep = self.request.work_dir is not None
        # CPU only: a process that touched the CUDA driver (an import may ask it for devices) cannot fork a child that
        # uses CUDA, so GPU trials start fresh
        warm = self.request.warm_start and self.request.settings.device == "cpu"
        self.request = self.request.model_copy(update={"settings": pace.with_baseline(self.request.settings)})  # before the warm process loads
        self.forkserver = ForkServer(trial_env(self.request.settings.threads)) if warm else None
        try:
            yield from self._events(cancel, keep)
        finally:
            if self.forkserver is not None:
                self.forkserver.close()

    def _events(self, cancel: threading.Event, keep: bool) -> Iterator[Event]:
        with tempfile.TemporaryDirectory(prefix="qadvisor-") as tmp:
            work_dir = Path(self.request.work_dir or tmp).resolve()
            work_dir.mkdir(parents=True, exist_ok=True)
            yield from self._reference(work_dir, cancel)
            for recipe in self.recipes:
                if cancel.is_set():
                    break
                spec = recipe.weights
                ok, reason = registry.recipe_available(recipe, has_cuda=self.request.settings.device == "cuda")
                refused = self._family_problem(recipe)
                if not ok or refused:
                    why = f"not for this model: {refused}" if refused else f"not available here: {reason}"
                    result = TrialResult(method=recipe.name, backend=spec.backend, bits=spec.bits, status="failed",
                                         reason=why, device=self.device_label)
                else:
                    result = yield from self._trial(recipe, work_dir, keep, cancel)
                self.results.append(result)
                yield Result(result=result)

    def _family_problem(self, recipe) -> str:
        """Why a method cannot quantize this model's family ('' where it can): it is named, never run half-way."""
        if recipe.weights.source is not None:  # a checkpoint is measured by the backend of its own format
            return ""
        arch = Architecture.from_config(self.model_dir.name, self.config)
        return registry.recipe_runs_on(recipe, arch.family, arch.is_moe)

    def _job(self, work: str, recipe, work_dir: Path, keep: bool, level: int = 0) -> Job:
        safe = registry.backend_for(recipe.weights).safe_configs[:level] if recipe is not None else ()
        fast_bf16 = self.fast_bf16 and not any(c.fp32_work for c in safe)
        job = Job(work=work, recipe=recipe, model_dir=self.model_dir, cache_dir=self.cache_dir, work_dir=work_dir,
                  eval_text=self.eval_path, calib_text=self.calib_path, settings=self.request.settings,
                  device_label=self.device_label, keep_model=keep, reuse_artifact=self.request.reuse_cache,
                  fast_bf16=fast_bf16, probe_dir=self.probe_dir, safe_level=level)
        if work == "trial" and self.keeps_models and recipe.weights.source is None:  # a checkpoint is not copied
            inputs = self._artifact_inputs(recipe.weights, fast_bf16)
            job = job.model_copy(update={"artifact_dir": self.artifacts_dir / artifacts.key_of(inputs),
                                         "artifact_inputs": inputs})
        return job

    def _artifact_inputs(self, spec, fast_bf16: bool | None = None) -> dict[str, str]:
        """What decides the quantized files of `spec` here (core.measure.artifacts)."""
        backend = registry.backend_for(spec)
        self.model_hash = self.model_hash or artifacts.content_hash(self.model_dir)
        s = self.request.settings
        # `source` left out: a cached method never has one, and a key it cannot change keeps existing entries valid
        return artifacts.key_inputs(self.model_hash, spec.model_dump_json(exclude={"source"}),
                                    (backend.package, *backend.also_needs),
                                    self.calib_path.read_text(encoding="utf-8") if backend.calibrates(spec) else "",
                                    s.device, backend.calibrates(spec) and s.score_accuracy,
                                    self.fast_bf16 if fast_bf16 is None else fast_bf16)

    def _reference(self, work_dir: Path, cancel: threading.Event) -> Iterator[Event]:
        ref_file = self.cache_dir / REFERENCE_FILE
        if not ref_file.is_file() and self.unscored:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            ref = checkpoints.unscored_reference if self.unreferenced else modelio.synthetic_reference
            ref_file.write_text(ref(self.model_dir).model_dump_json())
        trusted = self.reference_given or self.request.reuse_cache or self.unscored
        if not ref_file.is_file() or not trusted:
            started = time.perf_counter()
            ref_file.unlink(missing_ok=True)  # --no-cache: a failed step must not leave the old one looking fresh
            outcome: list[Event] = []
            for event in spawn(self._job("reference", None, work_dir, False), work_dir, cancel,
                                self.request.trial_timeout_s, self.forkserver, self.log_path("reference")):
                outcome.append(event)
                yield event
            if cancel.is_set():
                return
            errors = [e for e in outcome if isinstance(e, Error)]
            if errors or not ref_file.is_file():
                why = errors[-1].message if errors else "the reference step ended without a result"
                raise UserError(f"cannot run the unquantized model {self.model_dir}: {why}")
            self.reference_s = time.perf_counter() - started
        else:
            where = "computed once for this hardware kind (cluster)" if self.reference_given else "from cache"
            message = ("no reference model: size and speed only" if self.unreferenced
                       else f"reference log-probs {where}")
            yield Progress(method="reference", step="evaluate", fraction=1.0, message=message, stage="reference")
        self.reference = Reference.model_validate_json(ref_file.read_text())

    def reference_events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """The reference step alone: on a cluster one node of each hardware kind computes it for the others."""
        with tempfile.TemporaryDirectory(prefix="qadvisor-") as tmp:
            yield from self._reference(Path(tmp), cancel or threading.Event())

    def artifact_entry(self, spec) -> Path | None:
        """Where this machine's cache keeps `spec`'s quantized model (None when models this large are not kept)."""
        return self.artifacts_dir / artifacts.key_of(self._artifact_inputs(spec)) if self.keeps_models else None

    def _trial(self, recipe, work_dir: Path, keep: bool, cancel: threading.Event):
        """One method, quantized in one process and measured in another. Where a process dies of a fatal signal and
        the backend has a safer configuration left, the trial runs once more in it (quantizers.fallback)."""
        started = time.perf_counter()
        backend = registry.backend_for(recipe.weights)
        key = backend.build_key()
        before = fallback.kept(self.probe_dir, backend.name, key)
        level = before.level if before else 0
        result, errors, died = yield from self._attempt(recipe, work_dir, keep, cancel, level)
        if died and level < len(backend.safe_configs) and not cancel.is_set():
            safer = backend.safe_configs[level]
            # not an error yet: the crash and its log, then the retry; an error only if the retry fails too
            crash = errors[0].message if errors else f"the trial process crashed ({died})"
            yield Progress(method=recipe.name, step="load", message=f"{crash} — once more without {safer.turns_off}")
            # kept before the retry, so the trial's own processes read why they run so; put back if it fails too
            fallback.keep(self.probe_dir, backend.name, key, fallback.Verdict(level + 1, died, recipe.name))
            result, errors, again = yield from self._attempt(recipe, work_dir, keep, cancel, level + 1)
            if result is None:
                fallback.restore(self.probe_dir, backend.name, key, before)
                errors = [e.model_copy(update={"message": f"{e.message} (it crashed with {died} first; the safer "
                                                          "configuration did not help)"}) for e in errors]
        yield from errors
        error = errors[0].message if errors else None
        if result is not None:
            wall = time.perf_counter() - started
            return self._with_history(result.model_copy(update={"start_s": max(0.0, wall - (result.total_s or wall))}))
        spec = recipe.weights
        status = "cancelled" if cancel.is_set() else "failed"
        reason = "cancelled by the user" if cancel.is_set() else (error or "the trial process ended without a result")
        return TrialResult(method=recipe.name, backend=spec.backend, bits=spec.bits, status=status, reason=reason,
                           device=self.device_label, total_s=time.perf_counter() - started)

    def _with_history(self, result: TrialResult) -> TrialResult:
        """A measured decode beside this machine's earlier figures of the same model, method and settings (kept in the
        cache): how far it moves between processes here."""
        if result.status != "ok" or not result.decode_tok_s or result.decode_kind != "measured":
            return result
        s = self.request.settings
        key = f"{self.cache_dir.name}|{result.method}|{self.device_label}|{s.prompt_tokens}|{s.decode_tokens}"
        earlier = history.recall_and_add(self.cache_root, key, result.decode_tok_s, keep=not marked(result))
        return result.model_copy(update={"decode_earlier": earlier})

    def _attempt(self, recipe, work_dir: Path, keep: bool, cancel: threading.Event, level: int):
        """Quantize in one process, measure in a fresh one: (result, its errors, fatal signal a process died of)."""
        job = self._job("trial", recipe, work_dir, keep, level)
        partial, errors, died = yield from self._phase(job, work_dir, cancel)
        s = self.request.settings
        if cancel.is_set():  # stopped between its two processes: nothing measured, so the trial is cancelled
            return None, errors, died
        if partial is None or (keep and not (s.benchmark or s.score_accuracy)):
            return partial, errors, died  # a slice stops at its sizes: the slices are timed side by side
        measure = job.model_copy(update={"work": "measure", "partial": partial})
        return (yield from self._phase(measure, work_dir, cancel))

    def _phase(self, job: Job, work_dir: Path, cancel: threading.Event):
        """One process of a trial: its progress yielded; (its result, its errors held for the trial, a fatal signal)."""
        result, errors, died = None, [], []
        for event in spawn(job, work_dir, cancel, self.request.trial_timeout_s, self.forkserver, self.log_path(job.method),
                            died):
            if isinstance(event, Result):
                result = event.result
            elif isinstance(event, Error):
                errors.append(event)
            else:
                yield event
        return result, errors, (died[0] if died else None)

    def log_path(self, name: str) -> Path:
        """The trial's log, kept after the run where `qadvisor cache` lists it (a failed trial's message names it)."""
        if self.log_dir is None:
            self.log_dir = artifacts.new_log_dir(self.cache_root)
        return self.log_dir / f"{name}.log"

    def trial_names(self) -> list[str]:
        """What each trial's events and result are called, one per result `events()` yields (a cluster adds the
        node)."""
        return [r.name for r in self.recipes]

    def export(self) -> RunExport:
        ref = self.reference
        if ref is None:
            raise RuntimeError("export() before the reference step finished")
        s = self.request.settings
        results = list(self.results)
        finished = {r.method for r in results if r.status != "cancelled"}
        cut = [r.name for r in self.recipes if r.name not in finished]
        return RunExport(
            qadvisor_version=__version__,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            hardware=self.hardware,
            model=self._model_info(ref),
            settings=RunSettings(prompt_tokens=s.prompt_tokens, decode_tokens=s.decode_tokens, repeats=s.repeats,
                                 min_measure_s=s.min_measure_s, pace_baseline_s=s.pace_baseline_s,
                                 threads=s.threads, device=self.device_label, reuse_cache=self.request.reuse_cache),
            results=results, complete=not cut, cut=cut, reference_s=self.reference_s,
        )

    @property
    def model_path(self) -> Path:
        """The model the run is about: the reference (or, without one, the first checkpoint measured as shipped)."""
        return Path(self.checkpoints[0].source) if self.unreferenced else self.model_dir

    def _model_info(self, ref: Reference) -> ModelInfo:
        """The measured model, and the checkpoints measured as shipped, if any."""
        as_shipped = [spec.source for spec in self.checkpoints]
        named = self.model_path
        return ModelInfo(name=folder_name(named), path=str(named), params=ref.params, bf16_bytes=ref.bf16_bytes,
                         bf16_basis=ref.bf16_basis, ref_ppl=ref.ref_ppl, eval_tokens=ref.eval_tokens, checkpoints=as_shipped,
                         eval_text=self.eval_text)


def time_side_by_side(recipe, saved: list[Path], source: Path, settings: EvalSettings, device_label: str,
                      work_dir: Path, cancel: threading.Event, timeout_s: float = 1800.0, probe_dir: Path | None = None):
    """Time the saved quantized models of `recipe` side by side in one fresh process (worker.run_timing). Yields its
    progress; returns one result per model, or fewer when it failed or was cancelled (its Error says why)."""
    eval_path = modelio.text_for(source, modelio.EVAL_FILE)[0]
    backend = registry.backend_for(recipe.weights)
    verdict = fallback.kept(probe_dir, backend.name, backend.build_key())  # where the trials had to go, the timing goes
    job = Job(work="timing", recipe=recipe, model_dir=source, cache_dir=work_dir, work_dir=work_dir,
              eval_text=eval_path, calib_text=eval_path, settings=settings, device_label=device_label, timed=saved,
              probe_dir=probe_dir, safe_level=verdict.level if verdict else 0)
    results = []
    for event in spawn(job, work_dir, cancel, timeout_s):
        if isinstance(event, Result):
            results.append(event.result)
        else:
            yield event
    return results
