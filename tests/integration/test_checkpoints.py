"""Checkpoints measured as shipped: qadvisor's own kept models of the shipped model, measured again with the shipped
model as their reference, give back the trials' sizes to the byte and their accuracy within 1 %."""

import pytest

from qadvisor.schemas.export import load_export
from tests.conftest import SHIPPED, run_cli

KEPT = ("gptq-int4", "bnb-nf4", "gguf-q4_k_m")  # among the default methods: the session's cache has them (test_auto)


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kept")
    out = folder / "trials.json"
    proc = run_cli("--auto", "--methods", ",".join(KEPT), "--repeats", "2", "--keep-models", str(folder / "models"),
                   "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "models", {r.method: r for r in load_export(out).results}


def as_shipped(checkpoint, tmp_path, *extra):
    out = tmp_path / "shipped.json"
    proc = run_cli("--auto", "--model", str(checkpoint), "--repeats", "2", "--export", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_export(out), proc.stdout


def same_as_the_trial(trial, export, name):
    shipped = next(r for r in export.results if r.method == name)
    assert shipped.status == "ok", shipped.reason
    assert shipped.size_bytes == trial.size_bytes
    assert abs(shipped.ppl / trial.ppl - 1) < 0.01 and abs(shipped.kl_mean / trial.kl_mean - 1) < 0.01
    return shipped


@pytest.mark.parametrize("method", KEPT)
def test_a_kept_model_measured_as_shipped_reproduces_its_trial(kept, method, tmp_path):
    folder, trials = kept
    path = folder / method / "model.gguf" if method.startswith("gguf") else folder / method
    export, stdout = as_shipped(path, tmp_path, "--reference", str(SHIPPED))
    shipped = same_as_the_trial(trials[method], export, f"as-shipped:{method}")
    assert shipped.notes[0] and export.model.checkpoint == str(path)  # what the checkpoint says of itself
    assert export.recommendation.method == f"as-shipped:{method}"  # the advisor weighs it like any method
    assert f"as-shipped:{method}" in stdout and path.exists()  # measured, and the user's files left where they were


def test_without_a_reference_size_and_speed_only(kept, tmp_path):
    folder, trials = kept
    export, stdout = as_shipped(folder / "gguf-q4_k_m" / "model.gguf", tmp_path)
    shipped = export.results[0]
    assert shipped.size_bytes == trials["gguf-q4_k_m"].size_bytes and shipped.decode_tok_s > 0
    assert shipped.kl_mean is None and "no reference model" in shipped.reason
    assert export.model.bf16_basis.startswith("estimate") and "accuracy n/a: no reference model" in stdout
