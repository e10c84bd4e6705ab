"""`gguf-mix@<budget>`: a GGUF whose every matrix takes the type this model's measured sensitivity and the team's
budget choose (quantizers.sensitivity, quantizers.mixsolver), written by llama.cpp's own quantizer tensor by tensor
and measured by llama.cpp like any GGUF method. The llama.cpp backend (quantizers.llamacpp) runs it."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from qadvisor.errors import UserError, about
from qadvisor.format import MIB
from qadvisor.quantizers import mixsolver, sensitivity
from qadvisor.quantizers.fallback import digest, versions_key
from qadvisor.quantizers.gguf_mix import HF_ROLES, stored_type
from qadvisor.quantizers.ggufwrite import GGUF_FILE, Quantized, begin_gguf, to_gguf
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.method import MethodSpec
from qadvisor.schemas.mix import GgufMix

BUDGET = "mix_budget"  # the field a budget error is about (errors.UserError): the TUI form has its own
MIX_FILE = "mix.json"  # beside the GGUF: the types and the sensitivities behind them
FORM = MethodSpec(name=f"{mixsolver.PREFIX}<budget>", backend="llamacpp", bits=4.5, scheme=mixsolver.SCHEME, group_size=256,
                  summary="GGUF with a type per matrix, chosen from this model's measured sensitivity for a budget: "
                          "4.2bpw, a size (40GiB, 11800KiB) or kl0.01; :table=Q8_0 holds the embeddings and head")
# llama.cpp's LLAMA_FTYPE_* for the file's header, by the type most of its weights take (a label only)
FILE_TYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K": 12, "Q4_K": 15, "Q5_K": 17,
              "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30}


def method_named(name: str) -> MethodSpec | None:
    """The spec of `gguf-mix@…` (a malformed budget is a UserError); None for any other name."""
    if name.lower() == mixsolver.NAME:
        raise UserError(f"{name} needs a budget: {name}@4.5bpw, {name}@40GiB, {name}@kl0.01, or --max-size with "
                        "--auto", field=BUDGET)
    if not name.lower().startswith(mixsolver.PREFIX):
        return None
    with about(BUDGET):
        budget = mixsolver.parse_budget(name)
    bits = budget.value if budget.kind == "bpw" else FORM.bits
    return FORM.model_copy(update={"name": name, "bits": bits, "summary": f"GGUF mix for {budget.words()}"})


def layout(arch: Architecture) -> list[tuple[str, int, int]]:
    """(GGUF name, rows, row length) of every matrix a mix types: each layer's linears, the embeddings, the head."""
    roles = {role: gguf for gguf, role in HF_ROLES.items()}
    found = [(f"blk.{i}.{roles[name]}", n_out, n_in) for i in range(arch.num_hidden_layers)
             for name, n_in, n_out in arch.layer_linears(i)]
    found.append(("token_embd.weight", arch.vocab_size, arch.hidden_size))
    if not arch.tie_word_embeddings:
        found.append(("output.weight", arch.vocab_size, arch.hidden_size))
    return found


def check_budget(spec: MethodSpec, arch: Architecture) -> None:
    """A budget this model cannot meet is a UserError before anything runs: below its smallest mix."""
    budget = mixsolver.parse_budget(spec.name)
    shapes = layout(arch)
    weights = sum(rows * n_in for _, rows, n_in in shapes)
    least = sum(rows * n_in * min(mixsolver.BITS[k] for k in _allowed(n_in, budget, name)) / 8
                for name, rows, n_in in shapes)
    if budget.kind == "bpw" and budget.value < least * 8 / weights:
        raise UserError(f"{spec.name}: {arch.name}'s smallest mix is {least * 8 / weights:.2f} bits per weight (its "
                        "rows allow no smaller types)", field=BUDGET)
    if budget.kind == "bytes" and budget.value < least:
        raise UserError(f"{spec.name}: {arch.name}'s smallest mix needs {least / MIB:,.2f} MiB for its matrices alone",
                        field=BUDGET)


def _allowed(n_in: int, budget: mixsolver.Budget, name: str) -> list[str]:
    if budget.table and not name.startswith("blk."):
        return [stored_type(budget.table, n_in)]  # a type the row does not tile falls back as llama.cpp's does
    return mixsolver.candidates(n_in)


def quantize(model_dir: Path, spec: MethodSpec, ctx) -> Path:
    """Sensitivities, the solver, the GGUF written in the chosen types; the mix's record beside it. Returns the
    GGUF's path in a scratch folder of the trial's working folder."""
    budget = mixsolver.parse_budget(spec.name)
    scratch = Path(tempfile.mkdtemp(prefix="gguf-mix-", dir=Path.cwd()))
    ctx.progress("quantize", 0.02, "the fp32 model over the calibration text")
    found = sensitivity.probe(model_dir, ctx.calib_texts, ctx.threads)
    matrices, per_layer = _sensitivities(found, model_dir, ctx)
    matrices = [held(m, budget) for m in matrices]
    types = solve_for(matrices, budget, model_dir, scratch)
    ctx.progress("quantize", 0.82, "the whole mix at once over the calibration text (the additivity check)")
    mix = record(matrices, types, budget, found.kl_of(types, inputs=True), len(found.ids.flatten()), per_layer,
                 found.kl_of(types, weights=False, inputs=True))
    del found
    ctx.progress("quantize", 0.85, "llama.cpp's ggml_quantize_chunk, each matrix in its type")
    out = scratch / GGUF_FILE
    to_gguf(model_dir, out, Quantized(FILE_TYPES[_most(matrices, types)], lambda name, n_in: types.get(name), threads=ctx.threads))
    (scratch / MIX_FILE).write_text(mix.model_dump_json(indent=1))
    return out


def _sensitivities(found, model_dir: Path, ctx) -> tuple[list[mixsolver.Matrix], float]:
    """Each matrix's added KL per type, measured, or kept from an earlier mix of the same model and calibration text
    (in the probes folder: the measurement, not any mix, is what is reused)."""
    files = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(model_dir.glob("*.safetensors"))]
    key = digest("|".join([*files, *ctx.calib_texts, str(sensitivity.TOKENS), versions_key(("llama_cpp_python",))]))
    path = Path(ctx.probe_dir) / "sensitivity" / f"{key}.json" if ctx.probe_dir else None
    if path is not None and path.is_file():
        kept = json.loads(path.read_text())
        ctx.progress("quantize", 0.8, f"sensitivities from the cache (measured at {kept['seconds_per_layer']:.1f} s "
                                      "a layer)")
        return [mixsolver.Matrix(**m) for m in kept["matrices"]], kept["seconds_per_layer"]
    matrices, per_layer = sensitivity.measure(found, lambda f, m: ctx.progress("quantize", 0.05 + 0.75 * f, m))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seconds_per_layer": per_layer, "matrices": [vars(m) for m in matrices]}))
    return matrices, per_layer


def held(matrix: mixsolver.Matrix, budget: mixsolver.Budget) -> mixsolver.Matrix:
    """The embeddings and head at the budget's table type (where their rows allow it), else free."""
    allowed = _allowed(matrix.n_in, budget, matrix.name)
    return mixsolver.Matrix(matrix.name, matrix.rows, matrix.n_in, {k: matrix.added_kl[k] for k in allowed})


def solve_for(matrices: list, budget: mixsolver.Budget, model_dir: Path, scratch: Path) -> dict[str, str]:
    if budget.kind == "kl":
        return mixsolver.solve(matrices, max_kl=budget.value)
    weights = sum(m.rows * m.n_in for m in matrices)
    room = budget.value * weights / 8 if budget.kind == "bpw" else budget.value - overhead_bytes(model_dir, scratch)
    if mixsolver.smallest_bytes(matrices) > room:
        raise RuntimeError(f"the budget ({budget.words()}) is below this model's smallest mix")
    return mixsolver.solve(matrices, max_bytes=room)


def overhead_bytes(model_dir: Path, scratch: Path) -> int:
    """The file's bytes besides the typed matrices: its header, metadata and tensor table (written once to see), the
    tensors kept F32 or BF16, and each tensor's alignment padding at most."""
    path = scratch / "header.gguf"
    w, entries, _ = begin_gguf(model_dir, path)
    w.close()
    typed = {name for name, _, _ in layout(Architecture.from_config(model_dir.name, _config(model_dir)))}
    kept = sum(math.prod(e.shape) * (2 if e.bf16 else 4) for e in entries if e.name not in typed)
    size = path.stat().st_size
    path.unlink()
    return size + kept + 32 * len(entries)  # GGUF aligns each tensor's data to 32 bytes


def _config(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def record(matrices: list, types: dict[str, str], budget: mixsolver.Budget, together: float | None, tokens: int,
            per_layer: float, inputs_kl: float | None = None) -> GgufMix:
    """The mix's record; `inputs_kl`: the KL of llama.cpp's rounding of the matmuls' inputs alone, where measured,
    which the prediction adds to the matrices' own sensitivities."""
    size = mixsolver.matrix_bytes(matrices, types)
    return GgufMix(budget=budget.words(), tensor_types=types,
                   bits_per_weight=size * 8 / sum(m.rows * m.n_in for m in matrices), matrix_bytes=int(size),
                   predicted_kl=mixsolver.predicted_kl(matrices, types) + (inputs_kl or 0.0), inputs_kl=inputs_kl,
                   together_kl=together,
                   sensitivity_tokens=tokens, seconds_per_layer=per_layer,
                   added_kl={m.name: m.added_kl for m in matrices})


def _most(matrices: list, types: dict[str, str]) -> str:
    """The type that holds the most of the mix's weights."""
    weights: dict[str, int] = {}
    for m in matrices:
        weights[types[m.name]] = weights.get(types[m.name], 0) + m.rows * m.n_in
    return max(weights, key=weights.get)


def read(save_dir: Path) -> GgufMix | None:
    """A saved mix's record (None for any other saved model)."""
    path = Path(save_dir) / MIX_FILE
    return GgufMix.model_validate_json(path.read_text()) if path.is_file() else None
