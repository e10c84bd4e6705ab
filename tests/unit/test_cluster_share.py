"""What cluster nodes hand each other (core.cluster.driver.Shared), where a method runs (pins, CUDA) and a sent reference
taken as given. No Ray here (tests/integration/test_cluster.py starts a real one)."""

import threading

import pytest

from qadvisor.app.options import run_options
from qadvisor.core.cluster.driver import Node, _checked_pins
from qadvisor.core.cluster.share import Shared, shared_keys
from qadvisor.core.hardware import detect
from qadvisor.errors import UserError
from tests.samples import sample_export


def test_each_quantized_model_is_made_once_and_taken_by_the_others():
    shared, cancel = Shared(), threading.Event()
    keys = {"a": ("k1", False), "b": ("k2", False)}
    assert shared.next(keys, ["a", "b"], cancel) == ("a", "make")  # node 1
    assert shared.next(keys, ["a", "b"], cancel) == ("b", "make")  # node 2: a is being made, so b first
    shared.made("k1", "ref-a")
    assert shared.next(keys, ["a"], cancel) == ("a", "take")  # node 2, after b
    shared.made("k2", None)  # b failed on node 2: node 1 makes it itself
    assert shared.next(keys, ["b"], cancel) == ("b", "make")
    assert shared.next({"a": ("k1", True)}, ["a"], cancel) == ("a", "own")  # in that node's cache already


def test_a_node_waits_for_a_model_being_made_elsewhere():
    shared, cancel = Shared(), threading.Event()
    keys = {"a": ("k1", False)}
    assert shared.next(keys, ["a"], cancel)[1] == "make"
    threading.Timer(0.3, shared.made, args=("k1", "ref")).start()
    assert shared.next(keys, ["a"], cancel) == ("a", "take")


def test_a_kind_computes_its_reference_once():
    shared, calls = Shared(), []

    def compute():
        calls.append(1)
        return "ref"

    threads = [threading.Thread(target=shared.reference, args=("kind", f"node{i}", compute)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and shared.references["kind"] == "ref" and shared.reference_nodes["kind"].startswith("node")


def test_only_models_two_nodes_lack_are_shared():
    keys = {"n1": {"a": ("k1", False), "b": ("k2", False)}, "n2": {"a": ("k1", False), "b": ("k2", True)},
            "n3": {"a": ("k3", False)}}
    shared = shared_keys(keys)
    assert shared["n1"] == {"a": ("k1", False), "b": ("k2", True)}  # k2: only n1 lacks it
    assert shared["n3"] == {"a": ("k3", True)}  # another kind's key: nobody to share with


def _node(resources):
    return Node("id", "10.0.0.1", sample_export().hardware, resources)


def test_pins_name_a_method_of_the_run_and_a_resource_some_node_has():
    nodes = [_node({"CPU": 2, "H100": 1}), _node({"CPU": 2})]
    assert _checked_pins({"fp32": "H100"}, ["fp32"], nodes) == {"fp32": "H100"}
    with pytest.raises(UserError, match="no node of the cluster has resource A100"):
        _checked_pins({"fp32": "A100"}, ["fp32"], nodes)
    with pytest.raises(UserError, match="bnb-nf4 is not among"):
        _checked_pins({"bnb-nf4": "H100"}, ["fp32"], nodes)
    assert run_options(pin="fp32=H100, gptq-int4=A10G").pin == {"fp32": "H100", "gptq-int4": "A10G"}
    with pytest.raises(UserError, match="--pin: write METHOD=RESOURCE"):
        run_options(pin="fp32")


def test_a_sent_reference_is_used_even_with_no_cache(tmp_path):
    """--no-cache on a cluster: the kind's reference, computed in this run on another node, is not computed again."""
    from qadvisor.core.measure.runner import Run, RunRequest
    from qadvisor.core.measure.worker import REFERENCE_FILE
    from qadvisor.schemas.events import Progress

    run = Run(RunRequest(methods=["fp32"], cache_dir=tmp_path, reuse_cache=False), detect(with_backends=False))
    run.cache_dir.mkdir(parents=True)
    (run.cache_dir / REFERENCE_FILE).write_text('{"params": 1, "bf16_bytes": 2, "ref_ppl": null, "eval_tokens": 3}')
    run.reference_given = True
    (event,) = list(run.reference_events())
    assert isinstance(event, Progress) and "once for this hardware kind" in event.message and run.reference.params == 1


def test_a_cuda_method_runs_on_gpu_nodes_only_and_a_pinned_one_where_its_resource_is():
    from types import SimpleNamespace

    from qadvisor.core.cluster.driver import ClusterRun
    from qadvisor.quantizers import registry

    cpu = _node({"CPU": 2})
    gpu = Node("gpu-node", "10.0.0.9", sample_export().hardware, {"CPU": 8, "GPU": 1, "H100": 1})
    cluster = ClusterRun.__new__(ClusterRun)  # no Ray: placement only
    cluster.local = SimpleNamespace(recipes=registry.parse_methods("fp32,torchao-int4,gguf-q8_0"))
    cluster.pins, cluster.nodes = {"gguf-q8_0": "H100"}, [cpu, gpu]
    assert [n.split(" @ ")[0] for n in cluster.trial_names()] == ["fp32", "fp32", "torchao-int4", "gguf-q8_0"]
    assert not cluster._nowhere()
    cluster.nodes = [cpu]  # no GPU anywhere: torchao-int4 fails once, named without a node
    cluster.pins = {}
    assert [r.name for r in cluster._nowhere()] == ["torchao-int4"] and "torchao-int4" in cluster.trial_names()


def test_ray_starts_under_the_tui_whose_stderr_has_no_descriptor(monkeypatch):
    """ray.init enables faulthandler on sys.stderr: under the TUI that failed with 'file.fileno() is not a valid
    file descriptor'."""
    import io
    import sys

    from qadvisor.core.cluster.driver import _stderr_with_a_descriptor

    class Captured(io.StringIO):
        def fileno(self):
            return -1

    captured = Captured()
    monkeypatch.setattr(sys, "stderr", captured)
    with _stderr_with_a_descriptor():
        assert sys.stderr is sys.__stderr__
    assert sys.stderr is captured
