"""What the TUI needs from the core, gathered before it starts (hardware, methods, how to build a run)."""

from __future__ import annotations

from qadvisor.core import planner
from qadvisor.core.hardware import detect
from qadvisor.core.jobs import EvalSettings
from qadvisor.core.modelio import SHIPPED_MODEL_NAME
from qadvisor.core.runner import Run, RunRequest
from qadvisor.models.export import load_export
from qadvisor.quantizers import registry


def method_rows(has_cuda: bool) -> list[tuple[str, bool, str, bool]]:
    rows = []
    for spec in registry.methods().values():
        if spec.target == "kv-cache":
            continue  # never alone: the priorities screen stacks one on the chosen methods
        ok, reason = registry.method_available(spec, has_cuda)
        rows.append((spec.name, ok, spec.summary if ok else reason, spec.name in registry.DEFAULT_METHODS))
    return rows


def tui_inputs(args):
    hardware = detect()
    device = "cuda" if hardware.cuda else "cpu"
    export = load_export(args.load) if getattr(args, "load", None) else None

    def run_factory(form: dict, priorities):
        """Build the core Run from the priorities form; bad input raises UserError before anything runs."""
        settings = EvalSettings(device=device, threads=hardware.physical_cores)
        methods = registry.stack(form["methods"], form.get("kv"))
        request = RunRequest(model_dir=form.get("model") or args.model, methods=methods, settings=settings)
        plan = None
        if form.get("plan_for"):
            target = planner.parse_target(form.get("target") or "this")
            plan = planner.plan(planner.resolve_architecture(form["plan_for"]), target)
        return Run(request, hardware), plan

    return hardware, method_rows(device == "cuda"), SHIPPED_MODEL_NAME, run_factory, export
