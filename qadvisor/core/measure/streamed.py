"""Accuracy of a checkpoint of any size, measured one decoder layer at a time: the fp32 reference and then each
method carry the evaluation text through each layer read from the safetensors shards (never the whole model), then
the final norm and the head, row block by row block. PPL, KL and top-1 are scored as whole-model trials score them
(core.measure.metrics.score). Each method quantizes each layer with its own library (Backend.stream_layer), so peak memory
is about one layer's weights, the streams and the reference's log-probs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from qadvisor import format as f
from qadvisor.core.architectures import param_count, resolve_architecture
from qadvisor.core.hardware import fast_bf16
from qadvisor.core.measure import layers, mixstream, modelio
from qadvisor.core.measure.artifacts import new_log_dir
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.layers import family_class, fused_experts, text_prefix
from qadvisor.core.measure.modelio import paragraphs, tensor_header
from qadvisor.core.paths import default_cache_dir
from qadvisor.errors import UserError
from qadvisor.quantizers import registry
from qadvisor.quantizers.base import LayerPlace, TrialContext
from qadvisor.schemas.events import Event, Progress
from qadvisor.schemas.export import EvalText, LayerTime, StreamedAccuracy, StreamedMethod

HEAD_ROWS = 8192  # rows of the head per matmul: 8192 × 8192 fp32 is 256 MiB at 72B's width
REFERENCE = "fp32"


class Shards:
    """Tensors of a safetensors checkpoint by name, read one at a time from whichever shard holds them."""

    def __init__(self, model_dir: Path):
        self.where = {name: path for path in sorted(Path(model_dir).glob("*.safetensors")) for name in tensor_header(path)}
        self.prefix = text_prefix(self.where)  # model. or an image-text checkpoint's model.language_model.

    def get(self, name: str):
        from safetensors import safe_open

        with safe_open(str(self.where[name]), framework="pt") as f:
            return f.get_tensor(name)

    def rows(self, name: str, start: int, stop: int):
        from safetensors import safe_open

        with safe_open(str(self.where[name]), framework="pt") as f:
            return f.get_slice(name)[start:stop]

    def layer(self, index: int) -> dict:
        prefix = f"{self.prefix}layers.{index}."
        return fused_experts({name.removeprefix(prefix): self.get(name) for name in self.where if name.startswith(prefix)})

    def text(self, name: str) -> str:
        """A text-model tensor's name in this checkpoint (`embed_tokens.weight` → model.embed_tokens.weight)."""
        return self.prefix + name


class Layers:
    """The checkpoint's decoder layers built one at a time (weights assigned, never initialised), with the mask
    and rotary embeddings every layer shares."""

    def __init__(self, model_dir: Path, windows, threads: int):
        from transformers import AutoConfig

        self.config = AutoConfig.from_pretrained(str(model_dir)).get_text_config()
        self.config._attn_implementation = "sdpa"  # what from_pretrained picks on CPU
        self.arch = resolve_architecture(str(model_dir))
        self.shards = Shards(model_dir)
        self.inputs = windows[:, :-1]
        self.targets = windows[:, 1:]
        self.types: dict | None = None  # a GGUF mix's types while it streams
        self.place = lambda i: LayerPlace(index=i, arch=self.arch, threads=threads, types=self.types)
        self.model_dir = Path(model_dir)
        tied = self.arch.tie_word_embeddings
        self.head_name = self.shards.text("embed_tokens.weight") if tied else "lm_head.weight"

    def build(self, index: int):
        import torch

        with torch.device("meta"):
            layer = family_class(self.arch.family, "DecoderLayer")(self.config, index)
        layer.load_state_dict(self.shards.layer(index), assign=True)
        return layer.eval()

    def context(self, hidden):
        """The masks by layer type, rotary embeddings and positions for hidden states of this length and dtype, as
        the family's model makes them."""
        rope_positions, text_positions = layers.positions(self.arch.family, hidden.shape[1])
        return (layers.masks(self.arch.family, self.config, hidden, text_positions),
                layers.rotary(self.arch.family, self.config)(hidden, rope_positions), text_positions)

    def run(self, layer, hidden):
        """One layer over hidden states of any length (a calibration sample)."""
        masks, rotary, positions = self.context(hidden)
        return layer(hidden, attention_mask=masks[self.arch.layer_type(layer_index(layer))],
                     position_embeddings=rotary, position_ids=positions)


def layer_index(layer) -> int:
    """A decoder layer's index, as transformers' attention modules record it."""
    return next(m.layer_idx for m in layer.modules() if hasattr(m, "layer_idx"))


def _embed(layers: Layers, table: Callable, token_sets: list) -> list:
    """The embedding rows of each token tensor, as the method's model holds them: the table (a GiB at 7B) read once
    for all of them, only the rows they use kept."""
    import torch

    ids, inverse = torch.unique(torch.cat([t.flatten() for t in token_sets]), return_inverse=True)
    full = layers.shards.get(layers.shards.text("embed_tokens.weight"))
    rows = table("embed", full[ids].clone())[inverse]
    del full
    return [part.view(*t.shape, -1) for part, t in zip(rows.split([t.numel() for t in token_sets]), token_sets)]


def _logits(layers: Layers, hidden, table: Callable, head_input: Callable = lambda hidden: hidden):
    """Final norm, then the head one block of rows at a time (the rows as the method's model holds them)."""
    import torch

    norm = family_class(layers.arch.family, "RMSNorm")(layers.arch.hidden_size, eps=layers.config.rms_norm_eps)
    norm.weight = torch.nn.Parameter(layers.shards.get(layers.shards.text("norm.weight")).to(hidden.dtype),
                                     requires_grad=False)
    hidden = head_input(norm(hidden))
    parts = []
    for start in range(0, layers.arch.vocab_size, HEAD_ROWS):
        rows = layers.shards.rows(layers.head_name, start, min(start + HEAD_ROWS, layers.arch.vocab_size))
        parts.append((hidden @ table("head", rows).to(hidden.dtype).T).float())
    return torch.cat(parts, dim=-1)


@dataclass
class StreamRequest:
    model_dir: Path
    methods: list[str]
    windows: object  # [count, window] token ids (core.measure.metrics.eval_windows)
    threads: int = 1
    device: str = "cpu"
    calib_texts: list[str] | None = None  # paragraphs a calibrated method (GPTQ) solves each layer on


def stream(request: StreamRequest, out: StreamedAccuracy, cancel=None) -> Iterator[Event]:
    """The reference, then each method, through every layer; fills `out` as each finishes (so a stop keeps those
    that did) and yields progress per layer."""
    import torch

    from qadvisor.core.measure.metrics import score
    torch.set_num_threads(request.threads)
    layers = Layers(request.model_dir, request.windows, request.threads)
    out.layers, out.tokens = layers.arch.num_hidden_layers, int(layers.targets.numel())
    ctx = TrialContext(device=request.device, threads=request.threads, fast_bf16=fast_bf16(),
                       calib_texts=request.calib_texts or [])
    try:
        ref_lp, seconds, split = yield from _pass(layers, REFERENCE, lambda layer, place: layer.float(),
                                                  lambda role, rows: rows, torch.float32, cancel)
    except (MemoryError, RuntimeError, OSError) as exc:  # no reference, no method: said once, the run kept
        out.error = f"the fp32 reference: {type(exc).__name__}: {exc}"[:300]
        return
    if ref_lp is None:
        return
    ref_lp = torch.log_softmax(ref_lp, dim=-1)
    out.ref_ppl, out.ref_seconds_per_layer = score(ref_lp, ref_lp, layers.targets).ppl, seconds
    out.ref_layer_time = split
    for name in request.methods:
        spec = registry.spec(name)
        backend = registry.backend_for(spec)
        try:
            mix = (yield from mixstream.made_for(layers, spec, request, _logits, cancel)) if mixstream.is_mix(spec) else None
            layers.types = mix.tensor_types if mix else None
            calib = backend.stream_calibration(request.model_dir, ctx.calib_texts) if ctx.calib_texts else None
            logits, seconds, split = yield from _pass(
                layers, name, lambda layer, place: backend.stream_layer(layer, spec, ctx, place),
                lambda role, rows: backend.stream_table(spec, role, rows, layers.place(0)),
                backend.stream_dtype(spec), cancel,
                lambda hidden: backend.stream_head_input(spec, hidden, layers.place(0)),
                (calib, ctx.work_dtype) if calib else None)
        except Exception as exc:  # one method's library failing leaves the others to measure
            out.methods.append(StreamedMethod(method=name, error=f"{type(exc).__name__}: {exc}"[:300]))
            continue
        if logits is None:
            return
        acc = score(torch.log_softmax(logits, dim=-1), ref_lp, layers.targets)
        out.methods.append(StreamedMethod(method=name, ppl=acc.ppl, ppl_delta_pct=100.0 * (acc.ppl / out.ref_ppl - 1),
                                          kl_mean=acc.kl_mean, top1_agreement=acc.top1_agreement,
                                          seconds_per_layer=seconds, layer_time=split, mix=mix))


def _check_room(layers: Layers, index: int) -> None:
    """Before each layer: room for it in fp32 and again while it is quantized, or this method stops here, named."""
    import psutil

    need, free = 2 * layer_bytes(layers.arch), psutil.virtual_memory().available
    if need > free:
        raise MemoryError(f"layer {index + 1} needs about {f.gib(need)}, {f.gib(free)} available")


def _pass(layers: Layers, name: str, make: Callable, table: Callable, dtype, cancel,
          head_input: Callable = lambda hidden: hidden, calibration: tuple | None = None):
    """One stream through the embedding, every layer and the head: (logits, seconds per layer, where they went), or
    three Nones when stopped. `calibration` (token ids per sample, work dtype): a second stream the method calibrates each layer
    on, carried through its own quantized layers."""
    import torch

    count = layers.arch.num_hidden_layers
    with torch.no_grad():
        samples = [] if calibration is None else [torch.tensor([ids]) for ids in calibration[0]]
        hidden, *calib = _embed(layers, table, [layers.inputs, *samples])
        hidden = hidden.to(dtype)
        calib = None if calibration is None else [x.to(calibration[1]) for x in calib]
        started, spent = time.perf_counter(), [0.0, 0.0, 0.0]  # read, quantize, compute
        for i in range(count):
            if cancel is not None and cancel.is_set():
                return None, None, None
            yield Progress(method=f"{name} streamed", stage="stream", step="evaluate", fraction=i / count,
                           message=f"layer {i + 1}/{count} of {layers.arch.name}")
            _check_room(layers, i)
            place = layers.place(i)
            place.calib, place.run = calib, layers.run
            marks = [time.perf_counter()]
            built = layers.build(i)
            marks.append(time.perf_counter())
            layer = make(built, place).eval()  # new modules a quantizer put in train as built
            marks.append(time.perf_counter())
            hidden = layers.run(layer, hidden)
            marks.append(time.perf_counter())
            spent = [total + end - start for total, start, end in zip(spent, marks, marks[1:])]
            del layer, built
        seconds = (time.perf_counter() - started) / count
        split = LayerTime(read=spent[0] / count, quantize=spent[1] / count, compute=spent[2] / count)
        yield Progress(method=f"{name} streamed", stage="stream", step="evaluate", fraction=1.0, message="final norm and head")
        return _logits(layers, hidden, table, head_input), seconds, split


def quiet(events: Iterator[Event], log: Path) -> Iterator[Event]:
    """The events of a generator whose libraries print (GPTQModel's banner, tqdm bars): while it runs, the process's
    stdout and stderr go to `log`; the caller prints each event with the terminal back."""
    import os
    import sys

    with open(log, "ab") as sink:
        while True:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                event = next(events, None)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            if event is None:
                return
            yield event


def layer_bytes(arch) -> int:
    """fp32 bytes of one decoder layer's weights."""
    embed = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    return 4 * (param_count(arch) - embed) // arch.num_hidden_layers


def need_bytes(arch, tokens: int) -> int:
    """Peak memory of a streamed pass (an estimate): the table read once in bf16, a layer in fp32 and again in bf16
    while it is quantized, a block of head rows, and the logits of the reference and of one method."""
    table = 2 * arch.vocab_size * arch.hidden_size
    return table + 2 * layer_bytes(arch) + 4 * HEAD_ROWS * arch.hidden_size + 3 * 4 * tokens * arch.vocab_size


def _why_not_streamed(method: str, registry, arch) -> str:
    """'' when the method's layers can be quantized one at a time here, else why not."""
    if "+" in method:
        return "a KV-cache stack: streaming scores the weights, and the cache is measured by whole-model trials"

    spec = registry.spec(method)
    if spec is None or (method not in registry.backend_for(spec).streamed_methods and not mixstream.is_mix(spec)):
        return "its library quantizes whole models only here (no layer-by-layer path)"
    refused = registry.recipe_runs_on(registry.parse_methods(method)[0], arch.family, arch.is_moe)
    if refused:
        return refused
    if arch.is_moe and not registry.backend_for(spec).streams_experts:
        return "its layer-by-layer path quantizes nn.Linear modules only, not an MoE layer's fused experts"
    return ""


class StreamJob:
    """The planned model's own accuracy, streamed: checked on creation (weights, methods, memory), measured by
    `events()`; `result()` holds what finished, also after a stop."""

    def __init__(self, model_dir: Path, methods: list[str], eval_text: Path, settings: EvalSettings,
                 calib_text: Path | None = None, left_out: dict[str, str] | None = None, text: EvalText | None = None):
        """`left_out`: methods the run asked for that are not streamed, with the reason, so every one is named;
        `text`: what `eval_text` is (core.measure.evaltext), recorded beside the figures."""
        import psutil

        modelio.check_model_dir(model_dir)
        self.arch = resolve_architecture(str(model_dir))
        need, free = need_bytes(self.arch, settings.windows * (settings.window - 1)), psutil.virtual_memory().available
        if need > free:
            raise UserError(f"not enough memory to stream {model_dir.name}'s accuracy: about {f.gib(need)} "
                            f"needed, {f.gib(free)} available")
        self.not_streamed = {m: why for m in methods if (why := _why_not_streamed(m, registry, self.arch))}
        self.not_streamed.update(left_out or {})
        self.methods = [m for m in methods if m not in self.not_streamed]
        self.model_dir, self.eval_text, self.settings, self.calib_text = Path(model_dir), eval_text, settings, calib_text
        self.out = StreamedAccuracy(model=self.arch.name, path=str(model_dir), not_streamed=self.not_streamed,
                                    complete=False, random_weights=modelio.is_synthetic(model_dir), eval_text=text)

    def events(self, cancel=None) -> Iterator[Event]:
        import resource

        from transformers import AutoTokenizer

        from qadvisor.core.measure.metrics import eval_windows
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        ids = tokenizer(self.eval_text.read_text(encoding="utf-8")).input_ids
        windows = eval_windows(ids, self.settings.window, self.settings.windows)
        calib = paragraphs(self.calib_text) if self.calib_text else None
        request = StreamRequest(model_dir=self.model_dir, methods=self.methods, windows=windows,
                                threads=self.settings.threads, device=self.settings.device, calib_texts=calib)
        log = new_log_dir(default_cache_dir()) / "streamed.log"
        self.out.log = str(log)
        yield from quiet(stream(request, self.out, cancel), log)
        self.out.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.out.complete = len(self.out.methods) == len(self.methods) and self.out.ref_ppl is not None

    def result(self) -> StreamedAccuracy:
        return self.out
