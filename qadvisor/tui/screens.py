"""The four steps: hardware → priorities → run → recommendation (with export)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, HorizontalGroup, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Markdown,
    Select,
    SelectionList,
    Static,
)

from qadvisor.app.options import default
from qadvisor.app.page import ORDER, run_page
from qadvisor.app.report import section_markdown
from qadvisor.app.views import backends_view, comparison_view, doctor_view, hardware_lines, per_kind, score_view
from qadvisor.quantizers import mixsolver, registry
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.limits import LIMITS, Limit
from qadvisor.tui.fields import NumberInput


def _default_input(option: str, label: str) -> Input:
    """A whole-number field whose placeholder is the option's default (blank means that)."""
    return NumberInput(placeholder=str(default(option)), id=option, label=label, integer=True)


def _row(*fields: tuple[str, Input]) -> ComposeResult:
    """Inputs side by side with their names in a row above, column for column (fits 80 columns)."""
    with HorizontalGroup(classes="field-names"):
        for name, _ in fields:
            yield Label(name)
    with HorizontalGroup():
        for _, widget in fields:
            yield widget


def _limit_input(row: Limit) -> Input:
    """A size as text (15MiB, 40GB); every other limit a number."""
    if row.size:
        return Input(placeholder=row.placeholder, id=row.option)
    return NumberInput(placeholder=row.placeholder, id=row.option, label=row.label)


class HardwareScreen(Screen):
    """What was detected, and which backends can run here (with the reason when not)."""

    BINDINGS = [Binding("n", "app.goto_priorities", "Next: priorities")]

    def __init__(self, hardware: HardwareInfo, doctor=None) -> None:
        super().__init__()
        self.hardware = hardware
        self.doctor = doctor  # the last `qadvisor doctor` report kept on this machine (models.doctor), or None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("\n".join(f"[b]{label:<4}[/] {text}" for label, text in hardware_lines(self.hardware)),
                         id="hardware-summary")
            yield DataTable(id="backends", cursor_type="row")
            if self.doctor is not None:
                view = doctor_view(self.doctor)
                yield Static("\n".join([f"[b]{view.title}[/]", *view.above]), id="doctor-summary")
                yield DataTable(id="doctor", cursor_type="row")
            yield Button("Next: priorities", id="next", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one("#backends", DataTable), backends_view(self.hardware))
        if self.doctor is not None:
            fill_table(self.query_one("#doctor", DataTable), doctor_view(self.doctor))

    @on(Button.Pressed, "#next")
    def _next(self) -> None:
        self.app.action_goto_priorities()


class PrioritiesScreen(Screen):
    """Preset or weights, hard limits, the model and the methods to try."""

    # ctrl+ keys only: they work while an Input has focus, and a letter typed with none focused fires nothing
    BINDINGS = [Binding("ctrl+r", "start", "Run"), Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, presets: list[str], methods: list[tuple[str, bool, str, bool]], model_hint: str) -> None:
        super().__init__()
        self.presets = presets
        self.methods = methods  # (name, available, reason or summary, default)
        self.model_hint = model_hint

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="left"):
                yield Label("Preset")
                yield Select([(p, p) for p in self.presets], value="balanced", allow_blank=False, id="preset")
                yield Label("[b]Weights[/]")
                yield from _row(*[(key, NumberInput("1", id=key, label=key)) for key in ("storage", "latency", "accuracy")])
                yield Label("[b]Hard limits[/] (blank: none)")
                for pair in range(0, len(LIMITS), 2):  # two limits a row: the form fits 80 columns
                    yield from _row(*[(row.label, _limit_input(row)) for row in LIMITS[pair:pair + 2]])
                yield Label("[b]Model directory[/] or repo id (blank: bundled)")
                yield Input(placeholder=self.model_hint, id="model")
                yield Label("[b]Checkpoints[/] as shipped (reference: the model above)")
                yield Input(placeholder="quantized folders, .gguf files or OWNER/REPO-GGUF:Q4_K_M, comma-separated",
                            id="checkpoints")
                yield Checkbox("stream accuracy layer by layer", False, id="stream")
                yield Label("[b]Plan for[/] (optional; a folder: its own accuracy)")
                yield from _row(("Qwen model", Input(placeholder="Qwen2.5-72B, Qwen3-30B-A3B, a folder", id="plan_for")),
                                ("target", Input(placeholder="A100-80GB", id="target")))
                yield from _row(("target methods", Input(placeholder="blank: a spread of the methods", id="target_methods")))
                yield Checkbox("accept unverified accuracy", False, id="accept_unverified_accuracy")
                yield Label("[b]Measuring[/] (blank: the defaults)")
                yield from _row(("repeats", _default_input("repeats", "repeats")),
                                ("new tokens", _default_input("decode_tokens", "new tokens")),
                                ("prompt", _default_input("prompt_tokens", "prompt")))
                yield Checkbox("reuse cached quantized models", True, id="reuse_cache")
                yield Label("[b]Ray cluster[/] (blank: this machine)")
                yield from _row(("address", Input(placeholder="local or HOST:PORT", id="cluster")),
                                ("pin", Input(placeholder="gptq-int4=H100", id="pin")))
                yield Static("", id="form-error")
                yield Button("Run", id="run", variant="primary")
            with Vertical(id="right"):
                yield Label("[b]Methods to try[/] (✗: not here, and why)")
                yield SelectionList(
                    *[(f"{name}  [dim]{note}[/]" if ok else f"[dim]{name}  ✗ {note}[/]", name, default and ok)
                      for name, ok, note, default in self.methods],
                    id="methods",
                )
                yield Label("[b]Stack a KV-cache method[/] on each")
                kv = registry.methods()
                yield Select([("none", "")] + [(f"{n}: {kv[n].summary.split(' (')[0]}", n) for n in registry.kv_methods()],
                             value="", allow_blank=False, id="kv")
                yield Label("[b]A GGUF mix made for a budget[/] (gguf-mix@…, types from this model's sensitivity)")
                yield Input(placeholder="blank: none; 4.5bpw, 11800KiB or kl0.01", id="mix_budget")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_preset("balanced")

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        self._apply_preset(str(event.value))

    def _apply_preset(self, name: str) -> None:
        p = self.app.load_preset(name)
        for key in ("storage", "latency", "accuracy"):
            self.query_one(f"#{key}", Input).value = f"{getattr(p, key):g}"
        for row in LIMITS:
            value = getattr(p.limits, row.field)
            self.query_one(f"#{row.option}", Input).value = f"{value:g}" if value and not row.size else f"{value or ''}"

    def form(self) -> dict:
        values = {i.id: i.value.strip() for i in self.query(Input)}
        values["preset"] = str(self.query_one("#preset", Select).value)
        values["kv"] = str(self.query_one("#kv", Select).value)
        values["methods"] = list(self.query_one(SelectionList).selected)
        budget = values.pop("mix_budget", "")
        values["methods"] += [f"{mixsolver.PREFIX}{budget}"] if budget else []
        for box in ("reuse_cache", "stream", "accept_unverified_accuracy"):
            values[box] = self.query_one(f"#{box}", Checkbox).value
        return values

    @on(Button.Pressed, "#run")
    def action_start(self) -> None:
        error = self.app.start_run(self.form())
        self.query_one("#form-error", Static).update(f"[red]{error}[/]" if error else "")
        for field in self.query(".error"):
            field.remove_class("error")
        # the input the error is about (UserError.field): each is the form's widget of that id, where the form has one
        found = self.query(f"#{self.app.error_field}") if error and self.app.error_field else []
        for field in found:  # outlined in red and focused (scrolled to), the line beside it as a toast
            field.add_class("error")
            field.focus()
        if error:
            self.app.notify(error, severity="error", timeout=8)


class RunScreen(Screen):
    """Live panels per method and the trade-off plot, filled as the core's events arrive."""

    BINDINGS = [Binding("c", "app.cancel_run", "Cancel"), Binding("n", "app.goto_recommendation", "Recommendation")]

    def __init__(self, methods: list[str], plan_for: str | None = None) -> None:
        from qadvisor.tui.widgets import MethodPanel

        super().__init__()
        self.methods = methods
        self.plan_for = plan_for
        self.reference_done = False
        self.active = None  # the panel of the trial that runs now
        self.slice_lines: dict[str, str] = {}  # the slices' steps, each its newest line (app.show_slice)
        self.panels = {method: MethodPanel(method, i) for i, method in enumerate(methods)}

    def compose(self) -> ComposeResult:
        from qadvisor.tui.widgets import TradeoffPlot

        yield Header()
        with Horizontal():
            with VerticalScroll(id="panels"):
                yield Label("reference: waiting", id="reference")
                yield from self.panels.values()
                if self.plan_for:
                    yield Label(f"slices of {self.plan_for}: after the methods above", id="slices")
            yield TradeoffPlot(id="plot")
        yield Footer()

    def panel(self, method: str):
        """The live panel of `method`, or None for events of other steps (the reference, the planned model's slices)."""
        return self.panels.get(method)

    def show_line(self, widget_id: str, text: str) -> None:
        for label in self.query(f"#{widget_id}").results(Label):
            label.update(text)


# the hardware and the measured table have screens of their own (the first screen, the run screen)
ADVICE_SECTIONS = tuple(key for key in ORDER if key not in ("hardware", "results"))


class RecommendationScreen(Screen):
    """Archetype and method with reasons; changing weights re-advises at once, without measuring."""

    # no single letters: one typed while no input has focus must not save or open anything
    BINDINGS = [Binding("ctrl+s", "save", "Save JSON + report"), Binding("ctrl+o", "compare", "Compare"),
                Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="left"):
                yield Markdown("", id="advice")
            with VerticalScroll(id="right"):
                yield Label("[b]Re-advise[/] with other weights")
                yield from _row(*[(key, NumberInput("1", id=f"re_{key}", label=key))
                                  for key in ("storage", "latency", "accuracy")])
                with Vertical(id="scores"):
                    yield DataTable(id="results", classes="scores", cursor_type="row")
                yield Label("Save to (report beside it as .md)")
                yield Input("qadvisor-run.json", id="save_path")
                yield Button("Save JSON + report", id="save", variant="primary")
                yield Static("", id="save-status")
                yield Label("Compare with a saved run")
                yield Input(placeholder="other-run.json", id="compare_path")
                yield Button("Compare", id="compare")
        yield Footer()

    def on_mount(self) -> None:
        p = self.app.priorities
        for key in ("storage", "latency", "accuracy"):
            self.query_one(f"#re_{key}", Input).value = f"{getattr(p, key):g}"
        self.render_export()

    def render_export(self) -> None:
        """The advice and the score table (one of each per hardware kind on a cluster) and what goes with them."""
        export = self.app.export
        parts = per_kind(export)
        lines = []
        for heading, page in run_page(export, ADVICE_SECTIONS):  # a cluster's kinds each with its own page
            lines += [f"**{heading}**", ""] if heading else []
            for section in page:
                lines += section_markdown(section, narrow=True)
            lines.append("")
        self.query_one("#advice", Markdown).update("\n".join(lines))
        for table, (_, part) in zip(self._score_tables(parts), parts):
            table.clear()
            fill_table(table, score_view(part))

    def _score_tables(self, parts: list) -> list[DataTable]:
        """The first kind's table is in the layout; a cluster's other kinds get theirs, under their heading, once
        (re-advising keeps the kinds)."""
        tables = list(self.query_one("#scores").query(DataTable))
        if len(tables) == 1 and len(parts) > 1:
            box = self.query_one("#scores")
            box.mount(Label(Text(parts[0][0], style="bold")), before=tables[0])
            for i, (heading, _) in enumerate(parts[1:], start=1):
                tables.append(DataTable(id=f"results-{i}", classes="scores", cursor_type="row"))
                box.mount(Label(Text(heading, style="bold")), tables[-1])
        return tables

    @on(Input.Changed, "#re_storage, #re_latency, #re_accuracy")
    def _reweight(self) -> None:
        values = {k: self.query_one(f"#re_{k}", Input).value for k in ("storage", "latency", "accuracy")}
        error = self.app.readvise(values)
        for key in values:
            self.query_one(f"#re_{key}", Input).set_class(bool(error), "error")
        self.query_one("#save-status", Static).update(f"[red]{error}; the advice above is for the last weights that "
                                                      "worked[/]" if error else "")
        if not error:
            self.render_export()

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        path = Path(self.query_one("#save_path", Input).value.strip() or "qadvisor-run.json")
        self.query_one("#save-status", Static).update(self.app.save(path))

    @on(Button.Pressed, "#compare")
    def action_compare(self) -> None:
        path = self.query_one("#compare_path", Input).value.strip()
        if not path:
            self.query_one("#save-status", Static).update("[red]enter the path of a saved run to compare with[/]")
            return
        error = self.app.open_comparison(Path(path))
        self.query_one("#save-status", Static).update(f"[red]{error}[/]" if error else "")


class CompareScreen(Screen):
    """This run (A) next to a saved one (B): per method the change, and whether the advice differs."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, comparison, label_a: str, label_b: str) -> None:
        super().__init__()
        self.comparison = comparison
        self.view = comparison_view(comparison, label_a, label_b)

    def compose(self) -> ComposeResult:
        from qadvisor.tui.widgets import DecodeRatioPlot

        yield Header()
        with VerticalScroll():
            yield Static("\n".join(self.view.above), id="compare-heads")
            yield DataTable(id="compare-table", cursor_type="row")
            yield Static("\n".join([self.view.headline, *self.view.notes]), id="compare-verdict")
            yield DecodeRatioPlot(self.comparison.pairs, id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one(DataTable), self.view)


def fill_table(table: DataTable, view) -> None:
    """A shared view's rows (and its columns, the first time) in a DataTable; "no" shows red, as in the CLI."""
    if not table.columns:
        table.add_columns(*view.columns)
    for row in view.rows:
        table.add_row(*(f"[red]{cell}[/]" if cell == "no" else cell for cell in row))
