"""A GGUF mix's sensitivities for a checkpoint of any size, one decoder layer in memory (core.measure.streamed's
Layers): the calibration text is carried through the fp32 layers once, and at each layer every matrix is rounded
alone to its anchor type (quantizers.sensitivity.ANCHORS) and the layer run again on the same input.

The measure is layer-local, calibrated against end-to-end KL: the squared change of the layer's output, times the
KL per unit of such a change at that depth. That factor is measured on a few probe layers, whose every matrix is
rounded at once and whose output is carried through the later layers to the head beside the reference (and the
embeddings' rounded rows likewise, from the start); between probes it is interpolated. Every other type is scaled
from the anchor by the importance-weighted rounding error, as the whole-model pass does, here on a sample of rows."""

from __future__ import annotations

import time
from typing import Iterator

from qadvisor.quantizers import ggml, ggufmix, mixsolver
from qadvisor.quantizers.base import plain_linears
from qadvisor.quantizers.gguf_mix import gguf_name
from qadvisor.quantizers.ggufmix import layout
from qadvisor.quantizers.mixsolver import SCHEME
from qadvisor.quantizers.sensitivity import anchor as _anchor
from qadvisor.quantizers.sensitivity import mean_kl, rounding_errors, scaled
from qadvisor.schemas.events import Event, Progress

PROBES = 4  # layers whose perturbation is carried to the head
SAMPLE_ROWS = 256  # rows of a matrix each type's rounding error is estimated on
TOKENS = 512  # calibration tokens: the pass costs about ten layer forwards per layer over them


def _errors(weight, importance, threads: int) -> dict[str, float]:
    """Each allowed type's importance-weighted rounding error of the matrix, on a sample of its rows."""
    import torch

    rows = weight[torch.linspace(0, weight.shape[0] - 1, min(SAMPLE_ROWS, weight.shape[0])).long()].float()
    return rounding_errors(rows, importance, threads)


def _change(a, b) -> float:
    """Mean squared change per token of hidden states."""
    return float((a - b).pow(2).sum(-1).mean())


class Pass:
    """The state of the pass over the layers: the reference's hidden states, the probes' perturbed streams, and
    each matrix's layer-local change and rounding errors."""

    def __init__(self, layers, ids, threads: int, logits):
        self.layers, self.threads, self.logits = layers, threads, logits  # logits: streamed._logits
        self.n = layers.arch.num_hidden_layers
        step = max(1, self.n // PROBES)
        self.probes = sorted({min(self.n - 1, i) for i in range(step // 2, self.n, step)})
        self.ids = ids
        self.local: dict[str, tuple[int, float, dict[str, float]]] = {}  # name → (layer, change, errors)
        self.streams: dict[int, object] = {}  # probe layer (-1: the embeddings) → its perturbed hidden states
        self.probe_change: dict[int, float] = {}

    def embed(self):
        """The reference's embedded tokens, and the embeddings' stream: their rows rounded to the anchor type."""
        import torch

        shards = self.layers.shards
        table = shards.get(shards.text("embed_tokens.weight"))
        unique, inverse = torch.unique(self.ids, return_inverse=True)
        rows = table[unique].float()
        del table
        anchor = _anchor(rows.shape[1])
        hidden = rows[inverse]
        self.streams[-1] = ggml.round_trip(anchor, rows, self.threads)[inverse]
        self.probe_change[-1] = _change(self.streams[-1], hidden)
        self.local["token_embd.weight"] = (-1, self.probe_change[-1], _errors(rows, None, self.threads))
        return hidden

    def layer(self, i: int, hidden):
        """Layer i: the reference's output, every probe stream carried on, each matrix's change alone."""
        import torch

        layer = self.layers.build(i).float()
        linears = plain_linears(layer)
        importance, handles = {}, []
        for name, module in linears.items():
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: importance.__setitem__(name, args[0].float().pow(2).mean((0, 1)))))
        with torch.no_grad():
            out = self.layers.run(layer, hidden)
            for handle in handles:
                handle.remove()
            for key in list(self.streams):
                self.streams[key] = self.layers.run(layer, self.streams[key])
            kept = {name: module.weight.data for name, module in linears.items()}
            rounded = {name: ggml.round_trip(_anchor(m.in_features), kept[name], self.threads)
                       for name, m in linears.items()}
            for name, module in linears.items():
                module.weight.data = rounded[name]
                change = _change(self.layers.run(layer, hidden), out)
                module.weight.data = kept[name]
                gguf = gguf_name(f"model.layers.{i}.{name}.weight", False)
                self.local[gguf] = (i, change, _errors(kept[name], importance[name], self.threads))
            if i in self.probes:  # every matrix at its anchor at once: this layer's stream starts here
                for name, module in linears.items():
                    module.weight.data = rounded[name]
                self.streams[i] = self.layers.run(layer, hidden)
                self.probe_change[i] = _change(self.streams[i], out)
        return out

    def head(self, hidden):
        """The reference's log-probs, each probe's KL per unit of change, and the head's own anchor KL."""
        import torch

        keep = lambda role, rows: rows.float()  # noqa: E731
        anchor = _anchor(self.layers.arch.hidden_size)
        rounded = lambda role, rows: ggml.round_trip(anchor, rows.float(), self.threads)  # noqa: E731
        tied = self.layers.arch.tie_word_embeddings
        ref = torch.log_softmax(self.logits(self.layers, hidden, keep), -1)
        per_change = {}
        for key, stream in self.streams.items():  # a tied table is the head too: its stream ends in the rounded head
            lp = torch.log_softmax(self.logits(self.layers, stream, rounded if key == -1 and tied else keep), -1)
            per_change[key] = mean_kl(ref, lp) / max(self.probe_change[key], 1e-30)
        if not tied:
            measured = mean_kl(ref, torch.log_softmax(self.logits(self.layers, hidden, rounded), -1))
            head = self.layers.shards.rows(self.layers.head_name, 0, SAMPLE_ROWS)
            self.local["output.weight"] = (self.n, measured, _errors(head, self._head_importance(hidden), self.threads))
            per_change[self.n] = 1.0  # the head's change is its KL itself
        return per_change

    def _head_importance(self, hidden):
        """The head's input per column, squared and averaged: the final RMS norm's output."""
        shards = self.layers.shards
        weight = shards.get(shards.text("norm.weight")).float()
        eps = self.layers.config.rms_norm_eps
        normed = hidden * (hidden.pow(2).mean(-1, keepdim=True) + eps).rsqrt() * weight
        return normed.pow(2).mean((0, 1))


def sensitivities(layers, ids, threads: int, logits, cancel=None) -> Iterator[Event]:
    """Progress per layer; returns (each matrix with its KL per type, seconds per layer), or None when stopped.
    `logits(layers, hidden, table)`: the final norm and the head (core.measure.streamed)."""
    import numpy as np

    state = Pass(layers, ids, threads, logits)
    started = time.perf_counter()
    hidden = state.embed()
    for i in range(state.n):
        if cancel is not None and cancel.is_set():
            return None
        yield Progress(method="sensitivity", stage="stream", step="evaluate", fraction=i / state.n,
                       message=f"layer {i + 1}/{state.n} of {layers.arch.name}: each matrix rounded alone")
        hidden = state.layer(i, hidden)
    per_change = state.head(hidden)
    seconds = (time.perf_counter() - started) / state.n
    depths = sorted(k for k in per_change if 0 <= k < state.n)
    factor = lambda i: per_change[i] if i in per_change else float(  # noqa: E731
        np.interp(i, depths, [per_change[d] for d in depths]))

    shapes = {name: (rows, n_in) for name, rows, n_in in layout(layers.arch)}
    return [scaled(name, shapes[name], change * factor(i), errors)
            for name, (i, change, errors) in state.local.items()], seconds


def is_mix(spec) -> bool:
    return spec.scheme == SCHEME


def made_for(layers, spec, request, logits, cancel=None) -> Iterator[Event]:
    """A mix's types for the streamed checkpoint: its sensitivities over the calibration text, then the solver under
    the budget its name carries. Returns the mix's record (schemas.mix.GgufMix)."""
    import tempfile
    from pathlib import Path

    import torch
    from transformers import AutoTokenizer

    budget = mixsolver.parse_budget(spec.name)
    if not request.calib_texts:
        raise ValueError("a GGUF mix needs a calibration text to measure its sensitivities on")
    ids = AutoTokenizer.from_pretrained(str(request.model_dir))("\n\n".join(request.calib_texts)).input_ids[:TOKENS]
    found = yield from sensitivities(layers, torch.tensor([ids]), request.threads, logits, cancel)
    if found is None:
        raise InterruptedError("stopped during the sensitivity pass")
    matrices, per_layer = found
    matrices = [ggufmix.held(m, budget) for m in matrices]
    with tempfile.TemporaryDirectory() as scratch:
        types = ggufmix.solve_for(matrices, budget, Path(request.model_dir), Path(scratch))
    return ggufmix.record(matrices, types, budget, None, len(ids), per_layer)
