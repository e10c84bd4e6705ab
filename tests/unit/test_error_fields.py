"""Every user error names the input it is about (UserError.field), wherever the check that raises it lives (the
options, the session, the measuring core, the planner, a backend's method names), so a face points at that input
without reading the error's words back: the TUI outlines the form's widget of that id, nothing else."""

import argparse

import pytest

from qadvisor.errors import UserError
from qadvisor.schemas.priorities import Priorities
from qadvisor.tui.launch import tui_inputs

# (the TUI form's values, or the command line's for inputs only it has) → the field the error is about
CASES = [
    ({"model": "/no/such/model"}, {}, "model"),
    ({"methods": ["nope-int4"]}, {}, "methods"),
    ({"methods": ["fp32", "fp32"]}, {}, "methods"),
    ({"methods": ["gguf-mix@huge"]}, {}, "mix_budget"),
    ({"methods": ["gguf-mix@1bpw"]}, {}, "mix_budget"),
    ({"methods": ["gguf-mix@0.5KiB"]}, {}, "mix_budget"),  # below the bundled model's smallest mix
    ({"methods": ["gguf-q8_0"], "kv": "kv-int4"}, {}, "kv"),
    ({"plan_for": "Qwen9-1B"}, {}, "plan_for"),
    ({"plan_for": "Qwen2.5-0.5B", "target": "Z100"}, {}, "target"),
    ({"plan_for": "Qwen2.5-0.5B", "target_methods": "bnb-nf4"}, {}, "target_methods"),
    ({"checkpoints": "/no/such/file.gguf"}, {}, "checkpoints"),
    ({"pin": "fp32=H100"}, {}, "pin"),
    ({"repeats": 0}, {}, "repeats"),
    ({"prompt_tokens": 10**6}, {}, "prompt_tokens"),
    ({}, {"eval_text": "/no/such/text.txt"}, "eval_text"),
    ({}, {"calib_text": "/no/such/calib.txt", "methods": "fp32,gptq-int4"}, "calib_text"),
    ({}, {"export": "/proc/no-such-dir/run.json"}, "export"),
]


@pytest.mark.parametrize("form, args, field", CASES, ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_a_user_error_names_the_input_it_is_about(tmp_path, monkeypatch, form, args, field):
    monkeypatch.setenv("QADVISOR_CACHE", str(tmp_path / "cache"))
    inputs = tui_inputs(argparse.Namespace(model=None, load=None, **args))
    with pytest.raises(UserError) as caught:
        inputs.run_factory({"methods": ["fp32"], **form}, Priorities())
    assert caught.value.field == field, str(caught.value)
    assert not (tmp_path / "cache" / "artifacts").exists()  # refused before anything was measured


def test_a_cluster_address_error_names_the_cluster_field(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("QADVISOR_CACHE", str(tmp_path / "cache"))
    inputs = tui_inputs(argparse.Namespace(model=None, load=None))
    with pytest.raises(UserError) as caught:
        inputs.run_factory({"methods": ["fp32"], "cluster": "nonsense"}, Priorities())
    assert caught.value.field == "cluster"


def test_no_face_reads_an_errors_words_back():
    """The TUI holds no table from an error's words to a field: the field travels with the error."""
    from pathlib import Path

    import qadvisor.tui

    for path in Path(qadvisor.tui.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "FIELD_WORDS" not in text and "def field_of" not in text, path.name
