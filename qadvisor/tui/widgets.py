"""Widgets that render measured numbers: a live panel per method and the size × speed trade-off plot."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar, Static
from textual_plotext import PlotextPlot

from qadvisor.app.views import metrics_line
from qadvisor.format import MIB
from qadvisor.schemas.events import STEPS, Error, Metric, Progress
from qadvisor.schemas.result import TrialResult


class MethodPanel(Vertical):
    """One method's trial: current step, a progress bar over the steps, and metrics as they arrive."""

    DEFAULT_CSS = """
    MethodPanel { height: auto; border: round $panel; padding: 0 1; }
    MethodPanel.ok { border: round $success; }
    MethodPanel.failed { border: round $error; }
    MethodPanel > .metrics { color: $text-muted; }
    """

    def __init__(self, method: str, index: int) -> None:
        super().__init__(id=f"panel-{index}")  # a method name (`fp32+kv-int4`) is no valid widget id
        self.method = method
        self.metrics: dict[str, float] = {}
        self.border_title = method

    def compose(self) -> ComposeResult:
        yield Label("waiting", classes="step")
        yield ProgressBar(total=len(STEPS), show_eta=False, show_percentage=False, classes="bar")
        yield Static("", classes="metrics")

    def show_event(self, event) -> None:
        if isinstance(event, Progress):
            done = STEPS.index(event.step) if event.step in STEPS else 0
            within = event.fraction or 0.0
            self.query_one(ProgressBar).update(progress=done + within)
            pct = f" {100 * event.fraction:.0f}%" if event.fraction is not None else ""
            self.query_one(".step", Label).update(f"{event.step}{pct} — {event.message}")
        elif isinstance(event, Metric):
            self.metrics[event.name] = event.value
            self.query_one(".metrics", Static).update(self._metrics_text())
        elif isinstance(event, Error):
            self.query_one(".step", Label).update(f"[red]{event.message}[/]")

    def finish(self, result: TrialResult) -> None:
        self.add_class("ok" if result.status == "ok" else "failed")
        # the result is complete even if a metric event was missed
        self.metrics.update({k: v for k, v in result.model_dump().items() if isinstance(v, (int, float))})
        if result.status == "ok":  # a failed trial's bar stays where it stopped, drawn in red
            self.query_one(ProgressBar).update(progress=len(STEPS))
            self.query_one(".metrics", Static).update(self._metrics_text())
        else:  # the reason and its log path in full, wrapped: the one-line step label would cut them
            self.query_one(".metrics", Static).update(Text(result.reason, style="red"))
        text = "done" if result.status == "ok" else f"[red]{result.status}[/]"
        self.query_one(".step", Label).update(f"{text}  [dim]{result.total_s or 0:.0f} s[/]")

    def _metrics_text(self) -> str:
        return metrics_line(self.metrics)


class TradeoffPlot(PlotextPlot):
    """Size on disk against decode speed, one point per measured method; marker by accuracy loss."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.results: list[TrialResult] = []

    def add(self, result: TrialResult) -> None:
        # a point needs both figures: a trial stopped during its benchmark is ok with no speed
        if result.status == "ok" and result.size_bytes and result.decode_tok_s:
            self.results.append(result)
            self.redraw()

    def on_mount(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("size × decode  ● KL<.01 ◆<.1 ✕≥.1")
        plt.xlabel("MiB on disk")
        plt.ylabel("tok/s (log)")
        if not self.results:
            self.refresh()
            return
        xs = [r.size_bytes / MIB for r in self.results]
        # log scale: decode speeds here span 10× and more (llama.cpp against torch kernels)
        ys = [math.log10(r.decode_tok_s) for r in self.results]
        # margins so markers and their names stay inside the frame
        x_lo, x_hi = _padded(min(xs), max(xs), 0.25)
        x_lo = max(x_lo, 0.0)  # no negative sizes on the axis
        y_lo, y_hi = _padded(min(ys), max(ys), 0.15)
        plt.xlim(x_lo, x_hi)
        plt.ylim(y_lo, y_hi)
        ticks = [t for t in _NICE if y_lo <= math.log10(t) <= y_hi] or [round(10 ** ((y_lo + y_hi) / 2))]
        plt.yticks([math.log10(t) for t in ticks], [f"{t:g}" for t in ticks])
        cell = (x_hi - x_lo) / max(self.size.width - 10, 10)  # one character, in MiB
        row = (y_hi - y_lo) / max(self.size.height - 5, 5)  # one line, in log10(tok/s)
        mid = (x_lo + x_hi) / 2
        for marker, lo, hi in (("●", 0, 0.01), ("◆", 0.01, 0.1), ("✕", 0.1, float("inf"))):
            pts = [r for r in self.results if lo <= r.kl_mean < hi]
            if pts:
                plt.scatter([r.size_bytes / MIB for r in pts], [math.log10(r.decode_tok_s) for r in pts], marker=marker)
        taken: list[tuple[int, float, float]] = []  # (line, start, end) of names already placed
        for r in sorted(self.results, key=lambda r: -r.decode_tok_s):
            x, y = r.size_bytes / MIB, math.log10(r.decode_tok_s)
            left = x < mid  # names point away from the nearer edge
            start = x + 2 * cell if left else x - (2 + len(r.method)) * cell
            end = start + len(r.method) * cell
            line = round((y - y_lo) / row)
            for shift in (0, -1, 1, -2, 2, -3, 3):  # nearest free line, so close points keep readable names
                if not any(t[0] == line + shift and t[1] < end and start < t[2] for t in taken):
                    line += shift
                    break
            taken.append((line, start, end))
            plt.text(r.method, x=start if left else end, y=y_lo + line * row, alignment="left" if left else "right")
        self.refresh()


_NICE = [m * 10**e for e in range(-1, 6) for m in (1, 2, 5)]


def _padded(lo: float, hi: float, share: float) -> tuple[float, float]:
    pad = (hi - lo) * share or max(abs(hi) * share, 0.1)
    return lo - pad, hi + pad


class DecodeRatioPlot(PlotextPlot):
    """Decode speed of run B over run A, one bar per method: where the other machine is faster, and by how much."""

    def __init__(self, pairs, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pairs = pairs
        # two lines per bar besides the title and the axes: with fewer, plotext rounds neighbouring bars into one
        # line and labels stand beside other methods' values (12 methods in the old 14 lines showed bnb-nf4 with
        # bnb-int8's ratio)
        self.styles.height = 2 * len(pairs) + 4

    def on_mount(self) -> None:
        plt = self.plt
        plt.title("decode tok/s, B ÷ A (1 = the same)")
        ratios = [p.decode_ratio for p in self.pairs]
        plt.bar([p.method for p in self.pairs], ratios, orientation="horizontal", width=0.6)
        plt.xlim(0, max(ratios + [1.0]) * 1.1)  # from zero, so bar lengths compare
        plt.vline(1.0)
