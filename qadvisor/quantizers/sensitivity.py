"""How much a model's output moves when one weight matrix alone takes a GGUF type: the sensitivity a mix is solved
from (quantizers.mixsolver).

The measure is end-to-end KL against the fp32 model over the calibration text, taken once per matrix at one anchor
type (the 4.5-bit type its row allows), the text carried from the hidden state the reference left at that matrix's
layer (the layers before it are not run again). Every other type's KL is the anchor's scaled by the matrix's
layer-local error: the rounding error of each input column, weighed by that column's mean squared activation
(llama.cpp's importance matrix), summed. KL grows with the square of a small perturbation, which that error is.
llama.cpp's rounding of each matmul's input (Q8_K or Q8_0 by the weight's type) is measured once for a whole mix and
added to its prediction: it hardly depends on the weights' types."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qadvisor.quantizers import ggml
from qadvisor.quantizers.base import load_hf
from qadvisor.quantizers.gguf_mix import gguf_name
from qadvisor.quantizers.mixsolver import Matrix, candidates

TOKENS = 1024  # calibration tokens the pass reads, in chunks of CHUNK
CHUNK = 512
ANCHORS = ("Q4_K", "Q4_0")  # the first of these a row allows is the one end-to-end measurement per matrix


@dataclass
class Probe:
    """The fp32 model over the calibration chunks: the reference's log-probs, the hidden state entering each
    decoder layer, and each matrix's importance; `kl_of` measures any set of types at once."""

    model: object
    ids: object
    ref: object = None
    hidden: list = field(default_factory=list)
    importance: dict = field(default_factory=dict)
    threads: int = 1

    def parameters(self) -> dict[str, object]:
        """GGUF name → the model's weight parameter (a tied head is token_embd's)."""
        import torch

        tied = bool(getattr(self.model.config, "tie_word_embeddings", False))
        found = {"token_embd.weight": self.model.model.embed_tokens.weight}
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.startswith(("model.layers.", "lm_head")):
                found.setdefault(gguf_name(f"{name}.weight", tied), module.weight)
        return found

    def kl(self, start: int = 0) -> float:
        """Mean KL per token against the reference, the model run from decoder layer `start`'s input."""
        import torch

        inner = self.model.model
        every = inner.layers
        inner.layers = torch.nn.ModuleList(every[start:])  # the model makes the masks and positions as it would
        try:
            with torch.no_grad():
                logits = (self.model(inputs_embeds=self.hidden[start], use_cache=False) if start
                          else self.model(self.ids, use_cache=False)).logits
        finally:
            inner.layers = every
        return mean_kl(self.ref, torch.log_softmax(logits.float(), -1))

    def kl_of(self, types: dict[str, str], start: int = 0, weights: bool = True, inputs: bool = False) -> float:
        """The KL with every named matrix at its type together (each restored after): its `weights` rounded, and
        with `inputs` each matmul's input rounded as llama.cpp's CPU path rounds it against that type."""
        params = self.parameters()
        kept = {name: params[name].data for name in types}
        handles = self._input_rounding(types) if inputs else []
        try:
            for name, kind in types.items() if weights else ():
                params[name].data = ggml.round_trip(kind, kept[name], self.threads)
            return self.kl(start)
        finally:
            for handle in handles:
                handle.remove()
            for name, data in kept.items():
                params[name].data = data

    def _input_rounding(self, types: dict[str, str]) -> list:
        """Hooks rounding each typed linear's input (a tied head's by token_embd's type: llama.cpp multiplies by it)."""
        import torch

        params = self.parameters()
        by_weight = {id(params[name]): kind for name, kind in types.items()}
        return [m.register_forward_pre_hook(lambda mod, args, kind=by_weight[id(m.weight)]:
                                            (ggml.dot_rounded(kind, args[0]), *args[1:]))
                for m in self.model.modules() if isinstance(m, torch.nn.Linear) and id(m.weight) in by_weight]


def mean_kl(ref, lp) -> float:
    """KL(reference ‖ other) per token, averaged, from the two's log-probabilities."""
    return float((ref.exp() * (ref - lp)).sum(-1).mean())


def probe(model_dir: Path, texts: list[str], threads: int) -> Probe:
    """The fp32 model, its reference over the calibration text, and the hidden states and importances on the way."""
    import torch
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(model_dir))("\n\n".join(texts)).input_ids[:TOKENS]
    width = min(CHUNK, len(ids))
    if width < 16:
        raise ValueError("too little calibration text to measure sensitivities on (16 tokens or more)")
    windows = torch.tensor(ids[:len(ids) // width * width]).view(-1, width)
    model = load_hf(model_dir, torch.float32, "cpu")
    found = Probe(model=model, ids=windows, threads=threads)
    handles = _recorders(found)
    try:
        with torch.no_grad():
            found.ref = torch.log_softmax(model(windows, use_cache=False).logits.float(), -1)
    finally:
        for handle in handles:
            handle.remove()
    found.importance = {name: total / count for name, (total, count) in found.importance.items()}
    return found


def _recorders(found: Probe) -> list:
    """Hooks that keep each decoder layer's input and each matrix's mean squared input per column."""
    import torch

    params = found.parameters()
    by_weight = {id(p): name for name, p in params.items()}
    handles = [layer.register_forward_pre_hook(lambda m, args, kw: found.hidden.append(args[0] if args else
                                                                                        kw["hidden_states"]),
                                               with_kwargs=True)
               for layer in found.model.model.layers]

    def collect(name: str):
        def hook(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            total, count = found.importance.get(name, (0, 0))
            found.importance[name] = (total + (x * x).sum(0), count + x.shape[0])
        return hook

    for module in found.model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) in by_weight:
            handles.append(module.register_forward_pre_hook(collect(by_weight[id(module.weight)])))
    return handles


def layer_of(name: str) -> int:
    """The decoder layer a GGUF matrix belongs to (0 for the tables: a change there is carried from the start)."""
    return int(name.split(".")[1]) if name.startswith("blk.") else 0


def measure(found: Probe, progress: Callable[[float, str], None] = lambda f, m: None) -> tuple[list[Matrix], float]:
    """Each matrix's added KL at each type its rows allow, and the seconds the pass took per decoder layer."""
    params = found.parameters()
    n = len(found.model.model.layers)
    started, matrices = time.perf_counter(), []
    for i, (name, param) in enumerate(params.items()):
        matrices.append(_matrix(found, name, param.data))
        progress((i + 1) / len(params), f"sensitivity of {name} (layer {layer_of(name) + 1} of {n})")
    return matrices, (time.perf_counter() - started) / n


def anchor(n_in: int) -> str:
    """The one type a matrix of rows `n_in` long is measured end to end at."""
    kinds = candidates(n_in)
    return next(kind for kind in (*ANCHORS, *kinds) if kind in kinds)


def rounding_errors(weight, importance, threads: int) -> dict[str, float]:
    """Each type the rows allow: the rounding error of `weight`'s rows, each input column's squared error weighed by
    its importance (None: unweighted), summed."""
    found = {}
    for kind in candidates(weight.shape[1]):
        delta = (ggml.round_trip(kind, weight, threads) - weight.float()).pow(2).sum(0)
        found[kind] = float((delta * importance).sum() if importance is not None else delta.sum())
    return found


def scaled(name: str, shape: tuple[int, int], anchor_kl: float, errors: dict[str, float]) -> Matrix:
    """A matrix's KL at every type: the anchor's, scaled by each type's rounding error over the anchor's."""
    base = errors[anchor(shape[1])]
    scale = anchor_kl / base if base > 0 else 0.0
    return Matrix(name=name, rows=shape[0], n_in=shape[1], added_kl={k: e * scale for k, e in errors.items()})


def _matrix(found: Probe, name: str, weight) -> Matrix:
    """One matrix's KL at its anchor type, measured, and at every other type, scaled by the layer-local error."""
    errors = rounding_errors(weight, found.importance.get(name), found.threads)
    return scaled(name, tuple(weight.shape), found.kl_of({name: anchor(weight.shape[1])}, layer_of(name)), errors)
