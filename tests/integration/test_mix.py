"""A GGUF mix made for a budget on the bundled model: the file holds exactly the types its record lists, llama.cpp's
own quantizer makes the same types from the record's overrides, the budget holds to the byte, and the predicted
KL is the sum the record's sensitivities give."""

import ctypes

import pytest

from qadvisor.core.measure.modelio import bundled_model_dir, paragraphs
from qadvisor.quantizers import ggufmix, mixsolver, registry, sensitivity
from qadvisor.quantizers.base import TrialContext
from qadvisor.quantizers.ggufwrite import GGUF_FILE, to_gguf

BUDGET = 10_900_000  # bytes: a little under the bundled model's gguf-q3_k_m


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A mix at BUDGET, quantized and saved as a trial saves it (sensitivities over fewer tokens: the file, not its
    quality, is under test here)."""
    folder = tmp_path_factory.mktemp("mix")
    spec = registry.spec(f"gguf-mix@{BUDGET}")
    model_dir = bundled_model_dir()
    ctx = TrialContext(threads=2, max_tokens=64, calib_texts=paragraphs(model_dir / "calib.txt"))
    backend = registry.backend_for(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sensitivity, "TOKENS", 256)
        patch.chdir(folder)
        backend.save(backend.quantize(model_dir, spec, ctx), spec, folder)
    return folder, backend.made_with(folder)


def _types(path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def test_the_file_holds_exactly_the_types_its_record_lists(kept):
    folder, mix = kept
    found = _types(folder / GGUF_FILE)
    assert {name: found[name] for name in mix.tensor_types} == mix.tensor_types
    assert (folder / GGUF_FILE).stat().st_size <= BUDGET
    assert len(set(mix.tensor_types.values())) > 1  # a mix, not one type throughout


def test_the_prediction_is_the_sum_of_the_chosen_sensitivities(kept):
    _, mix = kept
    assert mix.inputs_kl is not None and mix.inputs_kl > 0
    assert mix.predicted_kl == pytest.approx(sum(mix.added_kl[n][k] for n, k in mix.tensor_types.items())
                                             + mix.inputs_kl)
    assert mix.together_kl is not None and mix.together_kl > 0
    assert mix.bits_per_weight == pytest.approx(mix.matrix_bytes * 8 / sum(
        m.rows * m.n_in for m in [mixsolver.Matrix(n, *_shape(n), {}) for n in mix.tensor_types]))


def _shape(name: str) -> tuple[int, int]:
    import json

    from qadvisor.schemas.architecture import Architecture

    arch = Architecture.from_config("bundled", json.loads((bundled_model_dir() / "config.json").read_text()))
    return next((rows, n_in) for found, rows, n_in in ggufmix.layout(arch) if found == name)


def test_llama_cpps_quantizer_makes_the_same_types_from_the_records_overrides(kept, tmp_path):
    import llama_cpp
    from gguf import GGMLQuantizationType

    _, mix = kept
    full, out = tmp_path / "full.gguf", tmp_path / "rebuilt.gguf"
    to_gguf(bundled_model_dir(), full)
    pairs = mix.overrides()
    table = (llama_cpp.llama_model_tensor_override * (len(pairs) + 1))()
    for row, (pattern, kind) in zip(table, pairs):
        row.pattern, row.type = pattern.encode(), GGMLQuantizationType[kind].value
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = 7, 2  # Q8_0 for anything the overrides left alone: none should be
    params.tt_overrides = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    assert llama_cpp.llama_model_quantize(str(full).encode(), str(out).encode(), params) == 0
    rebuilt = _types(out)
    assert {name: rebuilt[name] for name in mix.tensor_types} == mix.tensor_types


def test_a_mix_streams_with_sensitivities_measured_one_layer_at_a_time(monkeypatch):
    """The streamed path (for a checkpoint larger than RAM) on the bundled model: the same kind of record, a budget
    held, a prediction near the KL the streamed file's rounding gives."""
    from transformers import AutoTokenizer

    from qadvisor.core.measure import mixstream
    from qadvisor.core.measure.metrics import eval_windows
    from qadvisor.core.measure.streamed import StreamRequest, stream
    from qadvisor.schemas.export import StreamedAccuracy

    monkeypatch.setattr(mixstream, "TOKENS", 256)
    model_dir = bundled_model_dir()
    ids = AutoTokenizer.from_pretrained(str(model_dir))((model_dir / "heldout.txt").read_text()).input_ids
    request = StreamRequest(model_dir=model_dir, methods=["gguf-mix@5.5bpw"], windows=eval_windows(ids, 256, 4),
                            threads=2, calib_texts=paragraphs(model_dir / "calib.txt"))
    out = StreamedAccuracy(model="bundled", path=str(model_dir), not_streamed={}, complete=False)
    list(stream(request, out))
    (found,) = out.methods
    assert not found.error and found.mix is not None
    assert found.mix.bits_per_weight <= 5.5 and len(set(found.mix.tensor_types.values())) > 1
    assert 0.5 < found.mix.predicted_kl / found.kl_mean < 2
