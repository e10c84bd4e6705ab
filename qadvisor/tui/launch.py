"""What the TUI needs from the core, gathered before it starts (hardware, methods, how to build a run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qadvisor.app.auto import AutoSession
from qadvisor.app.doctor import saved_report
from qadvisor.app.options import names, run_options, values_from_args
from qadvisor.app.views import method_rows
from qadvisor.core.hardware import detect
from qadvisor.core.measure.modelio import BUNDLED_MODEL_NAME, bundled_model_dir
from qadvisor.quantizers import registry
from qadvisor.schemas.doctor import DoctorReport
from qadvisor.schemas.export import RunExport, load_export
from qadvisor.schemas.hardware import HardwareInfo


def method_choices(has_cuda: bool) -> list[tuple[str, bool, str, bool]]:
    """(name, runs here, what it is or why not, default) per weight method; a KV method never runs alone: the
    priorities screen stacks one on the chosen methods."""
    return [(r["name"], r["available"], r["summary"] if r["available"] else r["reason"], r["default"])
            for r in method_rows(has_cuda) if r["component"] == "weights" and not r["form"]]


@dataclass
class TuiInputs:
    """QAdvisorApp's arguments, by name."""

    hardware: HardwareInfo
    methods: list[tuple[str, bool, str, bool]]  # (name, runs here, what it is or why not, default): method_choices
    model_hint: str
    run_factory: Callable  # (form, priorities) -> a session (app.auto.AutoSession); raises UserError on bad input
    export: RunExport | None = None  # --load: the saved run to show
    doctor: DoctorReport | None = None  # the last `qadvisor doctor` report kept here
    loaded_from: Path | None = None


def _reference(form: dict) -> str | None:
    """A checkpoint's reference where the model field is blank: the bundled model, as blank means everywhere on the
    form (the command line's --model CHECKPOINT alone measures size and speed only)."""
    return str(bundled_model_dir()) if form.get("checkpoints") else None


def tui_inputs(args) -> TuiInputs:
    hardware = detect()
    export = load_export(args.load) if getattr(args, "load", None) else None

    def run_factory(form: dict, priorities) -> AutoSession:
        """The same session `--auto` runs: the command line's inputs with the priorities form laid over them (a
        field left blank keeps the command line's value); bad input raises UserError before anything runs."""
        given = values_from_args(args)
        typed = {"model": form.get("model") or given["model"] or _reference(form), "checkpoints": form.get("checkpoints"),
                 "methods": registry.stack(form["methods"], form.get("kv")), "plan_for": form.get("plan_for"),
                 "stream": form.get("stream") or given["stream"], "target": form.get("target"),
                 "target_methods": names(form.get("target_methods")), "repeats": form.get("repeats"),
                 "decode_tokens": form.get("decode_tokens"), "prompt_tokens": form.get("prompt_tokens"),
                 "reuse_cache": form.get("reuse_cache", True) and given["reuse_cache"],
                 "cluster": form.get("cluster"), "pin": form.get("pin")}
        values = {**given, **{k: v for k, v in typed.items() if v not in (None, "")}}
        return AutoSession(run_options(prefix="", **{k: v for k, v in values.items() if k != "reference"}), priorities)

    return TuiInputs(hardware=hardware, methods=method_choices(hardware.cuda is not None),
                     model_hint=BUNDLED_MODEL_NAME, run_factory=run_factory, export=export, doctor=saved_report(),
                     loaded_from=getattr(args, "load", None))
