"""qadvisor's Textual app. Measuring runs in a thread worker that posts the core's events as Messages."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.screen import ModalScreen
from textual.widgets import Markdown

from qadvisor.app.advice import readvise
from qadvisor.app.options import priority_options
from qadvisor.app.report import write_run
from qadvisor.core.advise.compare import compare
from qadvisor.errors import UserError
from qadvisor.schemas.events import Error, Metric, Progress, Result
from qadvisor.schemas.export import RunExport, load_export
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.limits import LIMITS
from qadvisor.schemas.priorities import Priorities, load_profile, preset_names
from qadvisor.tui.messages import RunFinished, TrialEvent
from qadvisor.tui.screens import HardwareScreen, PrioritiesScreen, RecommendationScreen, RunScreen

HELP = """\
# qadvisor

1. **Hardware** — what was detected and which backends can run here.
2. **Priorities** — a preset or your own weights, hard limits, the model, the methods.
3. **Run** — each method runs in its own process; panels fill in as numbers are measured.
4. **Recommendation** — Tool A / B / C with the method and the reasons; change the weights to re-advise
   at once; save the run as JSON plus a Markdown report.

Keys are in the footer; `ctrl+p` opens the command palette; `q` quits.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield Markdown(HELP, id="help")


class QAdvisorCommands(Provider):
    """One command palette entry per action."""

    async def search(self, query: str) -> Hits:
        app = self.app
        actions = [("Show hardware", app.action_goto_hardware), ("Set priorities", app.action_goto_priorities),
                   ("Run the selected methods", app.action_run_from_palette),
                   ("Cancel the current trial", app.action_cancel_run),
                   ("Show the recommendation", app.action_goto_recommendation),
                   ("Save the run as JSON and a Markdown report", partial(app.on_recommendation, "save")),
                   ("Compare with a saved run", partial(app.on_recommendation, "compare")), ("Help", app.action_help)]
        matcher = self.matcher(query)
        for text, callback in actions:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback)


class QAdvisorApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "qadvisor"
    COMMANDS = App.COMMANDS | {QAdvisorCommands}
    # ctrl+q quits from any screen, an input focused or not; q too where no input takes the letter
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True), Binding("q", "quit", "Quit", show=False),
                Binding("question_mark", "help", "Help")]

    def __init__(self, hardware: HardwareInfo, methods: list[tuple[str, bool, str, bool]], model_hint: str,
                 run_factory, export: RunExport | None = None, doctor=None, loaded_from: Path | None = None) -> None:
        super().__init__()
        self.hardware = hardware
        self.methods = methods
        self.model_hint = model_hint
        self.run_factory = run_factory  # (form dict, priorities) -> core Run; raises UserError on bad input
        self.error_field: str | None = None  # the form input the last error is about (UserError.field)
        self.priorities: Priorities = load_profile("balanced")
        self.export: RunExport | None = export
        self.doctor = doctor  # the last `qadvisor doctor` report kept here (app.doctor.saved_report), for the first screen
        self.cancel = threading.Event()
        self.autosaved: Path | None = None  # where the last run was saved on its own (app.auto.AutoSession.autosave)
        self.running = False  # a run is measuring: Cancel is offered only then
        self.loaded_from = loaded_from  # --load FILE: named in the header with when and where it was measured

    def check_action(self, action: str, parameters) -> bool | None:
        """Cancel only while a run measures (hidden from the footer otherwise)."""
        return self.running if action == "cancel_run" else True

    def run_state(self, running: bool, state: str) -> None:
        """The header's persistent word on the run (measuring, done, stopped, failed) and the bindings that go with it."""
        self.running = running
        self.sub_title = state
        self.refresh_bindings()

    def on_mount(self) -> None:
        self.push_screen(HardwareScreen(self.hardware, self.doctor))
        if self.export is not None:  # a saved run loaded from the command line
            self.sub_title = loaded_line(self.export, self.loaded_from)
            self.priorities = self.export.priorities or self.priorities
            self.readvise({})
            self.push_screen(RecommendationScreen())

    # navigation
    def action_goto_hardware(self) -> None:
        self.switch_to(HardwareScreen, self.hardware, self.doctor)

    def action_goto_priorities(self) -> None:
        self.switch_to(PrioritiesScreen, preset_names(), self.methods, self.model_hint)

    def action_goto_recommendation(self) -> None:
        if self.export is not None and self.export.recommendation is not None:
            self.switch_to(RecommendationScreen)
        else:
            self.notify("No results yet: run some methods first.", severity="warning")

    def action_run_from_palette(self) -> None:
        if isinstance(self.screen, PrioritiesScreen):
            self.screen.action_start()
        else:
            self.action_goto_priorities()

    def on_recommendation(self, action: str) -> None:
        """Palette entries that act on the recommendation screen: go there first, then do it."""
        self.action_goto_recommendation()
        if isinstance(self.screen, RecommendationScreen):
            getattr(self.screen, f"action_{action}")()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def switch_to(self, screen_type, *args) -> None:
        if isinstance(self.screen, screen_type):
            return
        self.push_screen(screen_type(*args))

    def load_preset(self, name: str) -> Priorities:
        return load_profile(name)

    # running
    def start_run(self, form: dict) -> str:
        """Check the form through the core, then measure in a worker; returns an error line or '' (the input it is
        about, where the error names one, in `error_field`)."""
        self.error_field = None
        try:
            self.priorities = self.priorities_from(form)
            if not form["methods"] and not form.get("checkpoints"):
                raise UserError("choose at least one method (or a checkpoint to measure as shipped)", field="methods")
            session = self.run_factory(form, self.priorities)
        except UserError as exc:
            self.error_field = exc.field
            return str(exc)
        self.cancel = threading.Event()
        self.run_state(True, "measuring…")
        self.push_screen(RunScreen(session.trial_names(), session.measured_after()))
        self.measure(session)
        return ""

    def priorities_from(self, form: dict) -> Priorities:
        keys = ("storage", "latency", "accuracy", *(row.option for row in LIMITS))
        return priority_options(prefix="", profile=form.get("preset") or "balanced", replace_limits=True,
                                accept_unverified_accuracy=form.get("accept_unverified_accuracy") or None,
                                **{k: form.get(k) for k in keys}).priorities()

    @work(thread=True, exclusive=True, exit_on_error=False, group="run", description="measure methods")
    def measure(self, session) -> None:
        """Every outcome ends in one RunFinished: results (complete or not), or the one line that says why none."""
        try:
            for event in session.events(self.cancel):
                self.post_message(TrialEvent(event))
            if not session.measured():
                self.post_message(RunFinished(None, "cancelled before the reference was ready: nothing measured"))
                return
            export = session.export()
        except UserError as exc:
            self.post_message(RunFinished(None, str(exc)))
            return
        except Exception as exc:  # a bug must show as a line, never take the screen down
            self.post_message(RunFinished(None, f"the run stopped on an internal error: {type(exc).__name__}: {exc}"))
            return
        try:
            self.autosaved = session.autosave(export)
        except OSError as exc:  # the results stay on screen and can still be saved by hand
            self.autosaved = None
            self.post_message(RunFinished(export, f"could not save the run on its own: {exc}"))
            return
        self.post_message(RunFinished(export))

    def action_cancel_run(self) -> None:
        if not self.running:
            return
        self.cancel.set()
        self.notify("Cancelling the current trial; finished results are kept.")

    async def action_quit(self) -> None:
        """Quit; mid-run, first stop the trial (its process group) and let the run save what finished."""
        self.cancel.set()
        running = [w for w in self.workers if w.group == "run" and w.is_running]
        for worker in running:
            try:
                await worker.wait()
            except Exception:  # its failure was posted as a line; quitting goes on
                pass
        saved = f"qadvisor: the stopped run's finished results are in {self.autosaved}" if running and self.autosaved else None
        self.exit(message=saved)

    @on(TrialEvent)
    def _trial_event(self, message: TrialEvent) -> None:
        screen = self.screen
        if isinstance(screen, RunScreen):
            show_event(screen, message.event)

    @on(RunFinished)
    def _run_finished(self, message: RunFinished) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=10)
        if message.export is None:
            self.run_state(False, "failed: " + (message.error or "nothing measured"))
            return
        self.export = message.export
        done = "Done" if self.export.complete else f"Stopped ({len(self.export.cut)} not measured)"
        headline = self.export.recommendation.headline if self.export.recommendation else "no recommendation"
        self.run_state(False, f"{done.split(' (')[0].lower()}: {headline}")
        saved = f" Saved to {self.autosaved}." if self.autosaved else ""
        self.notify(f"{done}: {headline}.{saved} Press n for the recommendation.")

    # advising
    def readvise(self, weights: dict[str, str]) -> str:
        """Recompute the recommendation from the measured results, no re-measuring; '' or why the weights cannot be
        used (all zero, negative), the advice on screen left as it was."""
        try:
            priorities = priority_options(prefix="", profile=self.priorities, **weights).priorities()
        except UserError as exc:
            return str(exc)
        self.priorities = priorities
        readvise(self.export, priorities)
        return ""

    def open_comparison(self, path: Path) -> str:
        """Load a saved run and show it beside this one; returns an error line or ''."""
        from qadvisor.tui.screens import CompareScreen

        try:
            other = load_export(path)
        except UserError as exc:
            return str(exc)
        a, b = self.export, other
        self.push_screen(CompareScreen(compare(a, b), f"this run: {a.model.name} on {a.settings.device}",
                                       f"{path.name}: {b.model.name} on {b.settings.device}"))
        return ""

    def save(self, path: Path) -> str:
        try:
            write_run(self.export, path, path.with_suffix(".md"))
        except OSError as exc:
            return f"[red]could not save: {exc}[/]"
        return f"saved {path} and {path.with_suffix('.md')}"


def show_event(screen: RunScreen, event) -> None:
    """Route one core event to its place on the run screen: the reference line, a method's panel, the slices line."""
    match event:
        case Progress(stage="reference") | Error(stage="reference"):
            screen.show_line("reference", f"reference: {event.step if isinstance(event, Progress) else '[red]error[/]'} "
                                          f"{event.message}")
            return
        case Result(result=result):
            method = result.method + (f" @ {result.node}" if result.node else "")
        case Progress() | Metric() | Error():
            method = event.method
    if not screen.reference_done:  # trials start only once the fp32 reference is ready
        screen.reference_done = True
        screen.show_line("reference", "reference: fp32 log-probs and bf16 size ready")
    panel = screen.panel(method) if event.stage == "trial" else None
    if event.stage in ("slice", "stream"):  # the --plan-for model: a line per method and depth, or streamed
        if not isinstance(event, Metric):
            show_slice(screen, event)
    elif panel is None:
        return
    elif isinstance(event, Result):
        panel.finish(event.result)
        screen.query_one("#plot").add(event.result)
    else:
        panel.show_event(event)
        if screen.active is not panel:  # the list follows the trial that runs now, once per trial (a user may scroll)
            screen.active = panel
            screen.call_after_refresh(panel.scroll_visible, animate=False)  # once its new lines are laid out


def show_slice(screen: RunScreen, event) -> None:
    """One line per step of the slices (building them, each method at each depth, their timing side by side), each
    showing its newest event: a method's depth ends on its result; its shared timing line goes once both are in."""
    lines = screen.slice_lines
    key = event.result.method if isinstance(event, Result) else event.method
    if key != "slices" and "slices" in lines:
        lines["slices"] = "slices: built"
    if isinstance(event, Result):
        method = key.rsplit(" ", 1)[0]
        for timing in [k for k in lines if k.startswith(f"{method} ") and " + " in k]:
            del lines[timing]
    lines[key] = _slice_line(event)
    screen.show_line("slices", "\n".join(lines.values()))


def _slice_line(event) -> str:
    match event:
        case Result(result=r) if r.status == "ok":
            return f"slices: {r.method}: decode {r.decode_tok_s:.2f} tok/s, prefill {r.prefill_tok_s:.1f} tok/s"
        case Result(result=r):
            return f"slices: [red]{r.method}: {r.status}: {r.reason}[/]"
        case Progress(stage="stream"):  # core.measure.streamed: the planned model's own accuracy
            return f"{event.method}: {event.message}"
        case Progress():
            pct = f" {100 * event.fraction:.0f}%" if event.fraction is not None else ""
            what = "" if event.method == "slices" else f" {event.method}:"
            return f"slices:{what} {event.step}{pct} {event.message}".rstrip()
        case Error():
            return f"slices: [red]{event.method}: {event.message}[/]"
    return f"slices: {event}"


def loaded_line(export: RunExport, path: Path | None) -> str:
    """Which saved run is on screen: its file, when it was measured and on what."""
    when = export.created_at[:16].replace("T", " ")
    return f"{path.name if path else 'a saved run'}: measured {when} UTC on {export.settings.device}"


def run_tui(inputs) -> None:
    """The TUI on what tui.launch.tui_inputs gathered (a TuiInputs: the app's arguments by name)."""
    QAdvisorApp(**vars(inputs)).run()

