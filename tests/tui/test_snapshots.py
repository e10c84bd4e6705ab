"""SVG snapshots of each screen at 80×24 with fixed inputs (recorded hardware and results, no measuring)."""

from pathlib import Path

from qadvisor.schemas.hardware import BackendAvailability, HardwareInfo
from qadvisor.tui.app import QAdvisorApp
from tests.samples import sample_export
from tests.samples import RECORDED

HARDWARE = HardwareInfo(
    cpu_model="Example CPU 8-core", physical_cores=8, logical_cores=16, isa_flags=["AVX2", "FMA"],
    ram_total_bytes=32 << 30, ram_available_bytes=20 << 30, disk_free_bytes=100 << 30, os="Linux 6.1",
    python="3.11.7", torch="2.13.0+cpu", gpu_note="no GPU: NVIDIA driver library (NVML) not found",
    backends=[BackendAvailability(backend="torch", available=True, reason="transformers 5.24.0", methods=["fp32", "bf16"]),
              BackendAvailability(backend="gptq", available=False, reason="gptqmodel is not installed",
                                  methods=["gptq-int4"])],
)
METHODS = [("fp32", True, "unquantized, float32", True), ("bnb-nf4", True, "4-bit NormalFloat", True),
           ("gptq-int4", False, "gptqmodel is not installed", True)]


def _no_runs(form, priorities):
    raise AssertionError("snapshot tests never measure")


def make_app(export=None) -> QAdvisorApp:
    return QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", _no_runs, export)


def _recorded():
    export = sample_export()
    export.results = list(RECORDED)
    return export


def test_hardware_screen(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24))


def test_priorities_screen(snap_compare):
    assert snap_compare(make_app(), press=["n"], terminal_size=(80, 24))


def test_recommendation_screen(snap_compare):
    assert snap_compare(make_app(_recorded()), terminal_size=(80, 24))


def test_recommendation_screen_wide(snap_compare):
    assert snap_compare(make_app(_recorded()), terminal_size=(140, 40))


class ScriptedRun:
    """Replays recorded events as a measuring session (core.measure.session.Session, inside app.auto.AutoSession)
    would yield them: three trials done, one mid-quantize."""

    model_path = Path("assets/qwen2-tiny-stdlib")
    device_label = "cpu (recorded)"
    reference = "recorded"

    def __init__(self, priorities):
        from types import SimpleNamespace

        self.priorities = priorities
        self.recipes = [SimpleNamespace(name=r.method) for r in RECORDED[:4]]

    def measured(self) -> bool:
        return True

    def measured_after(self) -> str | None:
        return None

    def trial_names(self) -> list[str]:
        return [r.name for r in self.recipes]

    def events(self, cancel):
        from qadvisor.schemas.events import Metric, Progress, Result

        yield Progress(method="reference", step="done", message="fp32 reference log-probs ready", stage="reference")
        for r in RECORDED[:3]:
            yield Progress(method=r.method, step="benchmark", message="warm-up + 5 repeats")
            for name in ("size_bytes", "compression_ratio", "decode_tok_s", "decode_tok_s_spread", "ppl_delta_pct",
                         "kl_mean", "top1_agreement"):
                yield Metric(method=r.method, name=name, value=getattr(r, name))
            yield Result(result=r.model_copy(update={"total_s": 12.0}))
        yield Progress(method=RECORDED[3].method, step="quantize", fraction=0.4, message="layer 10 of 24")

    def export(self):
        from qadvisor.app.advice import readvise

        export = _recorded()
        export.results = list(RECORDED[:3])
        return readvise(export, self.priorities)

    def autosave(self, export):
        return Path("runs/recorded.json")  # a fixed name for the snapshot (the real one writes TIME-MODEL.json)


async def _wait_for_run(pilot):
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_run_screen(snap_compare):
    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: ScriptedRun(priorities))
    assert snap_compare(app, press=["n", "ctrl+r"], run_before=_wait_for_run, terminal_size=(80, 24))


def test_help_screen(snap_compare):
    assert snap_compare(make_app(), press=["question_mark"], terminal_size=(80, 24))


def test_compare_screen(snap_compare, tmp_path):
    from qadvisor.schemas.export import save_export

    other = _recorded()
    other.settings.device = "cuda: Example GPU"
    other.results = [r.model_copy(update={"decode_tok_s": r.decode_tok_s * (0.5 + i), "device": "cuda: Example GPU"})
                     for i, r in enumerate(RECORDED)]
    save_export(other, tmp_path / "gpu-run.json")

    async def open_it(pilot):
        pilot.app.screen.query_one("#compare_path").value = str(tmp_path / "gpu-run.json")
        await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(make_app(_recorded()), run_before=open_it, terminal_size=(80, 24))


class FailingRun(ScriptedRun):
    """Two trials done, the third crashed mid-quantize: its bar stays where it stopped, red, naming its log."""

    def events(self, cancel):
        from qadvisor.schemas.events import Error, Progress, Result
        from qadvisor.schemas.result import TrialResult

        yield from list(super().events(cancel))[:1 + 2 * 9]  # the reference's line, two trials' 9 events each
        r = RECORDED[2]
        yield Progress(method=r.method, step="quantize", fraction=0.6, message="layer 14 of 24")
        yield Error(method=r.method, message="the trial process crashed (SIGSEGV)")
        yield Result(result=TrialResult(method=r.method, backend="x", bits=4, status="failed", device="cpu: test",
                                        reason="the trial process crashed (SIGSEGV); log: "
                                               "~/.cache/qadvisor/logs/20261206-1400/int4-fast.log"))


def test_run_screen_with_a_failed_trial(snap_compare):
    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: FailingRun(priorities))
    assert snap_compare(app, press=["n", "ctrl+r"], run_before=_wait_for_run, terminal_size=(80, 24))


def test_priorities_screen_with_a_form_error(snap_compare):
    async def bad_size(pilot):
        await pilot.press("n")
        pilot.app.screen.query_one("#max_size").value = "lots"
        await pilot.press("ctrl+r")
        await pilot.pause()

    assert snap_compare(make_app(), run_before=bad_size, terminal_size=(80, 24))


def test_recommendation_screen_per_cluster_kind(snap_compare):
    from tests.samples import two_kind_export

    assert snap_compare(make_app(two_kind_export()), terminal_size=(200, 50))


def _target_export():
    from qadvisor.app.advice import readvise
    from qadvisor.schemas.priorities import load_profile
    from tests.unit.test_target import _export_with_plan

    return readvise(_export_with_plan("A100-80GB"), load_profile("balanced"), with_target=True)


def test_recommendation_screen_with_the_target_advice(snap_compare):
    assert snap_compare(make_app(_target_export()), terminal_size=(200, 50))


def test_recommendation_screen_with_the_target_advice_at_80x24(snap_compare):
    assert snap_compare(make_app(_target_export()), terminal_size=(80, 24))
