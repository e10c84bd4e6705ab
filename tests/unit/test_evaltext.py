"""The evaluation text says what it is: held out only from the bundled model; a real checkpoint is scored on
wikitext-2 from the Hugging Face cache (laid out here, offline), else on the bundled text labelled not held out."""

import json
import shutil

import pytest

from qadvisor.core.measure import evaltext, modelio, synthetic
from tests.conftest import BUNDLED

ROWS = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a tactical role @-@ playing game .\n"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline unless a test says otherwise."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def _lay_out_wikitext(hub):
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = hub / "datasets--Salesforce--wikitext"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    target = repo / "snapshots" / revision / evaltext.WIKITEXT_FILE
    target.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": ROWS}), target)


def _checkpoint(tmp_path, name="Qwen-real"):
    """A folder shaped like a real checkpoint: the bundled files with other weights and no held-out text."""
    folder = tmp_path / name
    shutil.copytree(BUNDLED, folder)
    (folder / "model.safetensors").write_bytes(b"other weights")
    (folder / modelio.EVAL_FILE).unlink()
    return folder


def test_the_bundled_model_and_a_copy_of_it_are_held_out_from_its_split(tmp_path, hub):
    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED, copy)
    for folder in (BUNDLED, copy):
        text = evaltext.choose(folder, None, tmp_path / "cache")
        assert text.held_out == "yes" and text.words(2040).startswith("2040 held-out tokens")


def test_a_real_checkpoint_is_scored_on_wikitext_from_the_cache(tmp_path, hub):
    _lay_out_wikitext(hub)
    text = evaltext.choose(_checkpoint(tmp_path), None, tmp_path / "cache")
    assert text.source == evaltext.WIKITEXT and text.held_out == "unknown" and not text.why
    with open(text.path, encoding="utf-8") as fh:
        assert fh.read() == "".join(ROWS)  # the rows joined, as llama.cpp's wiki.test.raw holds them
    assert "held-out" not in text.words(100) and "unknown" in text.words(100)


def test_without_wikitext_the_bundled_text_is_used_and_never_called_held_out(tmp_path, hub):
    text = evaltext.choose(_checkpoint(tmp_path), None, tmp_path / "cache")
    assert text.path == str(BUNDLED / modelio.EVAL_FILE) and text.held_out == "no"
    assert "HF_HUB_OFFLINE is set" in text.why and "--eval-text" in text.why
    assert text.words(2040) == (f"2040 tokens of {evaltext.BUNDLED_TEXT}, which Qwen-real has likely trained on: "
                                "not held out from this model")


def test_the_users_text_and_random_weights_say_what_they_are(tmp_path, hub):
    mine = tmp_path / "domain.txt"
    mine.write_text("our own support tickets\n" * 50)
    text = evaltext.choose(_checkpoint(tmp_path), mine, tmp_path / "cache")
    assert text.held_out == "unknown" and text.path == str(mine) and "--eval-text" in text.source
    random = _checkpoint(tmp_path, "random")
    (random / synthetic.MARKER).write_text(json.dumps({"builder": 0}))
    assert evaltext.choose(random, None, tmp_path / "cache").held_out == "no"


def test_an_unreachable_hub_falls_back_at_once(tmp_path, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    text = evaltext.choose(_checkpoint(tmp_path), None, tmp_path / "cache")
    assert text.held_out == "no" and "cannot be reached" in text.why
