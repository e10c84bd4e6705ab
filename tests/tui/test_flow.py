"""Pilot drives the whole flow as a user would: hardware → priorities → run → recommendation → save → load.

The run uses the clearly named MOCK backend (and the real fp32 baseline) on the bundled model, so the
UI test stays fast; the real backends are covered by tests/integration.
"""

import argparse

import pytest

from qadvisor.quantizers import registry
from qadvisor.schemas.export import load_export
from qadvisor.tui.app import QAdvisorApp
from qadvisor.tui.launch import tui_inputs
from qadvisor.tui.screens import HardwareScreen, PrioritiesScreen, RecommendationScreen, RunScreen
from tests.conftest import trial_processes


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv(registry.MOCK_ENV, "1")
    registry.backends.cache_clear()
    yield QAdvisorApp(**vars(tui_inputs(argparse.Namespace(model=None, load=None))))
    registry.backends.cache_clear()


async def _priorities_with(pilot, *names):
    """From the hardware screen to the priorities screen, with exactly these methods chosen."""
    await pilot.press("n")
    methods = pilot.app.screen.query_one("#methods")
    methods.deselect_all()
    for name in names:
        methods.select(name)


async def test_whole_flow(app, tmp_path):
    async with app.run_test(size=(100, 40)) as pilot:
        assert isinstance(app.screen, HardwareScreen)
        await _priorities_with(pilot, "mock-int8", "mock-crash")
        assert isinstance(app.screen, PrioritiesScreen)
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        results = {r.method: r.status for r in app.export.results}
        assert results == {"mock-int8": "ok", "mock-crash": "failed"}
        panel = app.screen.panel("mock-int8")
        assert "decode" in str(panel.query_one(".metrics").render())
        await pilot.press("n")
        assert isinstance(app.screen, RecommendationScreen)
        assert app.export.recommendation.method == "mock-int8"
        app.screen.query_one("#re_storage").value = "5"
        await pilot.pause()
        assert app.priorities.storage == 5
        app.screen.query_one("#save_path").value = str(tmp_path / "run.json")
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = load_export(tmp_path / "run.json")
    assert saved.recommendation.method == "mock-int8" and saved.priorities.storage == 5
    assert (tmp_path / "run.md").read_text().startswith("# Quantization advice")


async def test_bad_form_shows_one_line_and_does_not_run(app):
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        app.screen.query_one("#model").value = "/no/such/model"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, PrioritiesScreen)
        assert "not found" in str(app.screen.query_one("#form-error").render())


async def test_the_run_list_follows_the_trial_that_runs_now():
    """At 80×24 the fourth trial's panel is below the fold: once it starts, the list scrolls to it."""
    from tests.tui.test_snapshots import HARDWARE, METHODS, ScriptedRun

    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: ScriptedRun(priorities))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", "ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        active = screen.panel(screen.methods[3])
        assert screen.active is active and screen.query_one("#panels").scroll_y > 0
        assert active.region.y < 24  # on screen


async def test_a_number_field_refuses_letters_out_loud(app):
    """Typed "5x.5." into max PPL: the field keeps 5.5, and each refused character is named, not dropped silently."""
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        field = app.screen.query_one("#max_ppl_rise")
        field.value = ""
        field.focus()
        await pilot.press("5", "x")
        await pilot.pause()
        assert field.has_class("refused")
        await pilot.press("full_stop", "5", "full_stop")
        await pilot.pause()
        assert field.value == "5.5"
        warnings = [str(n.message) for n in app._notifications]
        assert warnings.count("max PPL +%: a number only") >= 1
        repeats = app.screen.query_one("#repeats")
        repeats.focus()
        await pilot.press("2", "full_stop")
        await pilot.pause()
        assert repeats.value == "2" and "repeats: a whole number only" in [str(n.message) for n in app._notifications]


async def test_the_form_sets_what_the_command_line_sets(app, tmp_path):
    """Repeats, token counts, the cache and every limit, as `--auto` takes them; a value out of range is one line."""
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough")
        form = app.screen
        form.query_one("#repeats").value = "0"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, PrioritiesScreen)
        assert "repeats must be at least 1" in str(form.query_one("#form-error").render())
        assert form.query_one("#repeats").has_class("error") and app.focused is form.query_one("#repeats")
        form.query_one("#repeats").value = "2"
        form.query_one("#max_size").value = "lots"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "max size 'lots': not a size" in str(form.query_one("#form-error").render())
        assert form.query_one("#max_size").has_class("error") and not form.query_one("#repeats").has_class("error")
        form.query_one("#max_size").value = ""
        form.query_one("#decode_tokens").value = "8"
        form.query_one("#max_kl").value = "0.5"
        form.query_one("#reuse_cache").value = False
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        settings = app.export.settings
        assert (settings.repeats, settings.decode_tokens, settings.reuse_cache) == (2, 8, False)
        assert app.export.priorities.limits.max_kl == 0.5


async def test_cancel_keeps_finished_results(app):
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough", "fp32")
        await pilot.press("ctrl+r")
        while not any(r.method == "mock-passthrough" for r in (app.export.results if app.export else [])):
            await pilot.pause(0.2)
            if app.screen.panel("mock-passthrough").has_class("ok"):
                break
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        statuses = {r.method: r.status for r in app.export.results}
        assert statuses["mock-passthrough"] == "ok"
        assert statuses.get("fp32") in ("cancelled", "ok")  # ok only if it finished before the key landed


async def test_load_saved_run_and_compare(tmp_path):
    from qadvisor.schemas.export import save_export
    from qadvisor.tui.screens import CompareScreen
    from tests.samples import RECORDED, sample_export
    from tests.tui.test_snapshots import make_app

    export = sample_export()
    export.results = list(RECORDED)
    other = export.model_copy(deep=True)
    other.settings.device = "cuda: Test GPU"
    other.results = [r.model_copy(update={"decode_tok_s": r.decode_tok_s * 3}) for r in RECORDED]
    save_export(other, tmp_path / "gpu.json")
    app = make_app(export)
    app.loaded_from = tmp_path / "cpu.json"
    async with app.run_test(size=(100, 40)) as pilot:
        assert isinstance(app.screen, RecommendationScreen)
        assert app.sub_title == f"cpu.json: measured {export.created_at[:16].replace('T', ' ')} UTC on {export.settings.device}"
        app.screen.query_one("#compare_path").value = str(tmp_path / "nope.json")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert "no such file" in str(app.screen.query_one("#save-status").render())
        app.screen.query_one("#compare_path").value = str(tmp_path / "gpu.json")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one("#compare-table").row_count == len(RECORDED)
        assert "cuda: Test GPU" in str(app.screen.query_one("#compare-heads").render())


async def test_palette_has_an_entry_per_action():
    from qadvisor.tui.app import QAdvisorCommands
    from tests.tui.test_snapshots import make_app

    app = make_app()
    async with app.run_test(size=(100, 40)):
        provider = QAdvisorCommands(app.screen)
        for query in ("hardware", "priorities", "run the", "cancel", "recommendation", "save", "compare", "help"):
            assert [h async for h in provider.search(query)], query


async def test_mouse_drives_the_flow(tmp_path):
    """Buttons and footer keys answer clicks: next, run, the footer's recommendation key, save.
    The run replays recorded events (tests/tui/test_snapshots.ScriptedRun); nothing is measured."""
    from tests.tui.test_snapshots import HARDWARE, METHODS, ScriptedRun

    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: ScriptedRun(priorities))
    async with app.run_test(size=(100, 40)) as pilot:
        assert await pilot.click("#next")
        assert isinstance(app.screen, PrioritiesScreen)
        app.screen.query_one("#run").scroll_visible(animate=False)  # below the fold: a mouse user scrolls too
        await pilot.pause()
        assert await pilot.click("#run")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        footer_key = next(k for k in app.screen.query("FooterKey") if k.action == "app.goto_recommendation")
        assert await pilot.click(footer_key)
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        app.screen.query_one("#save_path").value = str(tmp_path / "clicked.json")
        assert await pilot.click("#save")
        await pilot.pause()
    assert load_export(tmp_path / "clicked.json").recommendation.method == app.export.recommendation.method


async def test_kv_stack_conflicts_are_explained_not_dropped(app):
    from textual.widgets import Select

    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough", "gguf-q4_k_m")
        app.screen.query_one("#kv", Select).value = "kv-int4"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, PrioritiesScreen)  # nothing ran
        error = str(app.screen.query_one("#form-error").render())
        assert "kv-int4 cannot stack on gguf-q4_k_m" in error and "llama.cpp" in error


def _trial_processes() -> list:
    from tests.conftest import trial_processes

    return trial_processes()


async def _wait_until(pilot, condition, seconds=300):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)


@pytest.mark.slow
async def test_a_stacked_kv_method_runs_end_to_end(app):
    """A recipe name such as `fp32+kv-int4` is no valid widget id; the panels must not depend on it."""
    from textual.widgets import Select

    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "fp32")
        app.screen.query_one("#kv", Select).value = "kv-int4"
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        # the stack's weights alone beside it: the cache's effect is the difference between the two
        assert [(r.method, r.status) for r in app.export.results] == [("fp32", "ok"), ("fp32+kv-int4", "ok")]
        assert "KV KiB" in _run_page_text(app)
        assert app.screen.panel("fp32+kv-int4").has_class("ok")


async def test_an_error_in_the_measuring_thread_is_shown_not_a_crash():
    from tests.tui.test_snapshots import HARDWARE, METHODS, ScriptedRun

    class Broken(ScriptedRun):
        def events(self, cancel):
            yield from list(super().events(cancel))[:3]
            raise KeyError("a bug")

    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: Broken(priorities))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.export is None
        assert any("internal error: KeyError" in str(n.message) for n in app._notifications)


@pytest.mark.slow
async def test_cancel_during_the_reference_step(app, monkeypatch, tmp_path):
    monkeypatch.setenv("QADVISOR_CACHE", str(tmp_path))  # no cached reference: the step really runs
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough")
        await pilot.press("ctrl+r")
        await _wait_until(pilot, lambda: "waiting" not in str(app.screen.query_one("#reference").render()))
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.export is None and isinstance(app.screen, RunScreen)
        assert any("before the reference was ready" in str(n.message) for n in app._notifications)
    assert not trial_processes(with_forkservers=True)


@pytest.mark.slow
async def test_quit_mid_run_stops_the_trial(app, capsys):
    """q mid-run: the trial stops, the finished results are saved (complete false), no process is left."""
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough", "mock-hang")
        await pilot.press("ctrl+r")
        await _wait_until(pilot, lambda: app.screen.panel("mock-passthrough").has_class("ok") and _trial_processes())
        await pilot.press("q")
    assert not trial_processes(with_forkservers=True)  # quitting waited for the run to stop its processes
    saved = load_export(app.autosaved)
    assert not saved.complete and saved.cut == ["mock-hang"]
    assert [r.method for r in saved.results if r.status == "ok"] == ["mock-passthrough"]
    assert "finished results are in" in capsys.readouterr().err  # said on the terminal once the TUI is gone


async def test_the_recommendation_screen_shows_the_target_advice():
    from qadvisor.app.advice import readvise
    from qadvisor.schemas.priorities import load_profile
    from tests.tui.test_snapshots import make_app
    from tests.unit.test_target import _export_with_plan

    export = readvise(_export_with_plan(), load_profile("latency-first"), with_target=True)
    app = make_app(export)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        shown = app.screen.query_one("#advice").source
        assert export.target.recommendation.headline in shown and "Recommendation for Qwen2.5-72B" in shown
        assert "gguf-q4_k_m" in shown and "published by Qwen" in shown


async def test_a_gpu_targets_bound_shows_as_an_upper_limit_beside_qwens_published_speeds():
    from qadvisor.app.advice import readvise
    from qadvisor.schemas.priorities import load_profile
    from tests.tui.test_snapshots import make_app
    from tests.unit.test_target import _export_with_plan

    export = readvise(_export_with_plan("A100-80GB"), load_profile("balanced"), with_target=True)
    app = make_app(export)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        shown = app.screen.query_one("#advice").source
        assert "upper limit" in shown and "decodes at most" in shown and "on A100 80GB, decode tok/s" in shown


async def test_a_cluster_run_has_a_score_table_per_hardware_kind():
    from tests.samples import two_kind_export
    from tests.tui.test_snapshots import make_app

    app = make_app(two_kind_export())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        tables = list(app.screen.query(".scores"))
        assert len(tables) == 2 and all(t.row_count == 1 for t in tables)
        app.screen.query_one("#re_latency").value = "3"  # re-advising refills the same two tables
        await pilot.pause()
        assert len(list(app.screen.query(".scores"))) == 2
        headings = [str(label.render()) for label in app.screen.query("#scores Label")]
        assert [h.split(" (")[0] for h in headings] == [f"On {k.kind}" for k in app.export.kinds]


async def test_the_compare_plot_puts_each_methods_bar_beside_its_name(tmp_path):
    # twelve methods, the default --auto's count: each labelled line of the plot must carry that method's ratio
    from qadvisor.schemas.export import save_export
    from tests.samples import result, sample_export
    from tests.tui.test_snapshots import make_app

    ratios = [0.5, 1.3, 0.7, 1.6, 0.9, 1.1, 0.6, 1.5, 0.8, 1.2, 1.0, 1.4]
    export = sample_export()
    export.results = [result(f"m{i}", 10 + i, 100.0, 0.001, 0.1) for i in range(len(ratios))]
    other = export.model_copy(deep=True)
    other.results = [r.model_copy(update={"decode_tok_s": 100.0 * k}) for r, k in zip(export.results, ratios)]
    save_export(other, tmp_path / "other.json")
    app = make_app(export)
    async with app.run_test(size=(120, 60)) as pilot:
        app.screen.query_one("#compare_path").value = str(tmp_path / "other.json")
        await pilot.press("ctrl+o")
        await pilot.pause()
        lines = app.screen.query_one("#compare-plot").render().plain.splitlines()
    bars = {line.split("┤")[0].strip(): line.count("█") for line in lines if "┤" in line and "m" in line.split("┤")[0]}
    assert sorted(bars) == sorted(r.method for r in export.results)
    by_ratio = [bars[f"m{i}"] for i in sorted(range(len(ratios)), key=ratios.__getitem__)]
    assert by_ratio == sorted(by_ratio) and len(set(by_ratio)) == len(ratios)  # longer bar, larger ratio, each its own


def _doctor_report():
    from qadvisor.schemas.doctor import DoctorReport, DoctorRow

    return DoctorReport(created_at="2026-12-06T02:00:00+00:00", cpu="cpu", isa_flags=["AVX2", "AMX"], threads=2,
                        cpu_contention=0.02, total_s=41.0,
                        rows=[DoctorRow(backend="torch", method="fp32", verdict="works", detail="decodes 150.0 tok/s",
                                        seconds=2.1),
                              DoctorRow(backend="llamacpp", method="gguf-q8_0", verdict="works with a fallback",
                                        detail="ran without llama.cpp's extra buffer types", seconds=3.0),
                              DoctorRow(backend="hqq", method="hqq-int4", verdict="not installed")])


async def test_the_hardware_screen_shows_the_last_doctor_report(monkeypatch):
    from tests.tui.test_snapshots import HARDWARE, METHODS

    app = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: None, None, _doctor_report())
    async with app.run_test(size=(120, 40)):
        table = app.screen.query_one("#doctor")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [r[2] for r in rows] == ["works", "works with a fallback", "not installed"]
        assert "ISA AVX2, AMX; 2 threads" in str(app.screen.query_one("#doctor-summary").render())
    bare = QAdvisorApp(HARDWARE, METHODS, "qwen2-tiny-stdlib", lambda form, priorities: None)
    async with bare.run_test(size=(120, 40)):
        assert not bare.screen.query("#doctor")  # no report kept: no table


def test_the_command_line_launch_hands_the_app_everything_it_gathers(monkeypatch):
    from qadvisor.tui import app as tui_app

    started = []
    monkeypatch.setattr(tui_app.QAdvisorApp, "run", lambda self: started.append(self))
    tui_app.run_tui(tui_inputs(argparse.Namespace(model=None, load=None)))
    assert len(started) == 1 and started[0].hardware is not None


async def test_letters_typed_with_no_input_focused_save_and_open_nothing(tmp_path, monkeypatch):
    """On the recommendation screen, s and o (the old shortcuts) with nothing focused: no file appears in the working
    folder and no comparison opens; after a run has ended, c cancels nothing and the footer offers no Cancel."""
    from tests.samples import RECORDED, sample_export
    from tests.tui.test_snapshots import make_app

    monkeypatch.chdir(tmp_path)
    export = sample_export()
    export.results = list(RECORDED)
    app = make_app(export)
    async with app.run_test(size=(100, 40)) as pilot:
        assert isinstance(app.screen, RecommendationScreen)
        app.screen.set_focus(None)
        for key in ("s", "o", "c", "r"):
            await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, RecommendationScreen)
        assert list(tmp_path.iterdir()) == [] and not app.cancel.is_set()
        assert app.check_action("cancel_run", ()) is False
        await pilot.press("ctrl+q")
    assert not app.is_running


async def test_zero_weights_in_the_readvise_boxes_say_why_and_keep_the_advice():
    from tests.samples import RECORDED, sample_export
    from tests.tui.test_snapshots import make_app

    export = sample_export()
    export.results = list(RECORDED)
    app = make_app(export)
    async with app.run_test(size=(100, 40)) as pilot:
        before = app.export.recommendation.method
        for key in ("storage", "latency", "accuracy"):
            app.screen.query_one(f"#re_{key}").value = "0"
            await pilot.pause()
        status = str(app.screen.query_one("#save-status").render())
        assert "weights: at least one of storage, latency, accuracy must be above 0" in status
        assert app.screen.query_one("#re_storage").has_class("error") and app.export.recommendation.method == before
        app.screen.query_one("#re_latency").value = "1"
        await pilot.pause()
        assert not app.screen.query_one("#re_storage").has_class("error")


def _run_page_text(app) -> str:
    from qadvisor.app.views import results_view

    return " ".join(results_view(app.export).columns)


async def test_target_methods_are_a_field_and_its_errors_name_it(app):
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, "mock-passthrough")
        form = app.screen
        form.query_one("#plan_for").value = "Qwen2.5-7B"
        form.query_one("#target_methods").value = "gguf-q4_k_m"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, PrioritiesScreen)  # nothing ran
        error = str(form.query_one("#form-error").render())
        assert error.startswith("target methods: gguf-q4_k_m not among the methods to try") and "--" not in error
        assert form.query_one("#target_methods").has_class("error")


@pytest.mark.parametrize("widget, value, method", [("mix_budget", "huge", "mock-passthrough"),
                                                   ("plan_for", "Qwen9-1B", "mock-passthrough"),
                                                   ("kv", "kv-int4", "gguf-q8_0")])
async def test_an_error_outlines_the_widget_it_names(app, widget, value, method):
    """The form's widget the error is about (UserError.field) is outlined and focused, the others cleared."""
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot, method)
        form = app.screen
        form.query_one("#repeats").add_class("error")  # a previous error's outline
        form.query_one(f"#{widget}").value = value
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, PrioritiesScreen) and str(form.query_one("#form-error").render())
        assert form.query_one(f"#{widget}").has_class("error") and app.focused is form.query_one(f"#{widget}")
        assert not form.query_one("#repeats").has_class("error")


def test_the_slice_phase_shows_a_line_per_method_and_depth():
    from qadvisor.schemas.events import Progress, Result
    from qadvisor.schemas.result import TrialResult
    from qadvisor.tui.app import show_slice

    class Screen:
        slice_lines: dict = {}
        shown = ""

        def show_line(self, _id, text):
            self.shown = text

    def done(label):
        return Result(result=TrialResult(method=f"gguf-q4_k_m {label}", backend="llama.cpp", bits=4, status="ok",
                                         decode_tok_s=3.0, prefill_tok_s=40.0))

    screen = Screen()
    show_slice(screen, Progress(method="slices", step="build", fraction=0.5, message="2-layer slice"))
    assert screen.shown == "slices: build 50% 2-layer slice"
    for event in (Progress(method="gguf-q4_k_m @2L", step="quantize", fraction=0.25),
                  Progress(method="gguf-q4_k_m @4L", step="quantize", fraction=0.5),
                  Progress(method="gguf-q4_k_m @2L + @4L", step="decode", fraction=0.75)):
        show_slice(screen, event)
    assert screen.shown.splitlines() == ["slices: built", "slices: gguf-q4_k_m @2L: quantize 25%",
                                         "slices: gguf-q4_k_m @4L: quantize 50%",
                                         "slices: gguf-q4_k_m @2L + @4L: decode 75%"]
    show_slice(screen, done("@2L"))
    show_slice(screen, done("@4L"))
    assert screen.shown.splitlines()[1:] == ["slices: gguf-q4_k_m @2L: decode 3.00 tok/s, prefill 40.0 tok/s",
                                             "slices: gguf-q4_k_m @4L: decode 3.00 tok/s, prefill 40.0 tok/s"]


async def test_a_checkpoint_is_measured_as_shipped_from_the_form(app, tmp_path):
    """The form's checkpoint field: a GGUF measured as it is, the bundled model (the blank model field) its reference;
    a file that is not one is a line beside the field."""
    from qadvisor.quantizers.ggufwrite import to_gguf
    from tests.conftest import BUNDLED

    to_gguf(BUNDLED, tmp_path / "model.gguf")
    (tmp_path / "notes.gguf").write_text("not a model")
    async with app.run_test(size=(100, 40)) as pilot:
        await _priorities_with(pilot)
        form = app.screen
        form.query_one("#checkpoints").value = str(tmp_path / "notes.gguf")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "not a GGUF file" in str(form.query_one("#form-error").render())
        assert form.query_one("#checkpoints").has_class("error")
        form.query_one("#checkpoints").value = str(tmp_path / "model.gguf")
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shipped = app.export.results[0]
        assert (shipped.method, shipped.status) == ("as-shipped:gguf-bf16", "ok") and shipped.kl_mean is not None
        assert app.export.model.checkpoints == [str(tmp_path / "model.gguf")]
