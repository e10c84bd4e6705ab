import json

from qadvisor.core import hardware
from tests.conftest import run_cli


def test_detect_reports_this_machine():
    info = hardware.detect()
    assert info.logical_cores >= 1 and info.ram_total_bytes > 0
    assert info.torch
    assert {b.backend for b in info.backends} >= {"torch", "bnb", "gptq", "hqq", "quanto", "torchao"}
    if not info.gpus:
        assert info.gpu_note.startswith("no GPU")


def test_missing_nvml_means_no_gpu(monkeypatch):
    import pynvml

    def missing():
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    gpus, note = hardware.detect_gpus()
    assert gpus == [] and "NVML" in note


def test_hardware_json_cli():
    proc = run_cli("hardware", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["cpu_model"] and data["backends"]


def test_methods_cli_lists_availability():
    proc = run_cli("methods", "--json")
    listed = json.loads(proc.stdout)
    rows = {r["name"]: r for r in listed["methods"]}
    assert rows["fp32"]["available"] is True
    assert "reason" in rows["torchao-int4"]
    shipped = {r["format"]: r for r in listed["as_shipped"]}
    assert {"gptq", "awq", "bnb", "gguf", "compressed-tensors"} <= set(shipped)
    assert shipped["gptq"]["backend"] == "gptq" and "reason" in shipped["compressed-tensors"]


def test_empty_cache_variable_means_default(monkeypatch):
    from pathlib import Path

    from qadvisor.core.paths import default_cache_dir

    monkeypatch.setenv("QADVISOR_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "qadvisor"


def test_quantizers_work_in_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from qadvisor.quantizers.base import TrialContext

    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("cpu", ["AVX2", "FMA"]))
    assert not hardware.fast_bf16()
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("cpu", ["AVX2", "AVX512F", "AVX512_BF16"]))
    assert hardware.fast_bf16()
    monkeypatch.setenv("QADVISOR_FAST_BF16", "0")
    assert not hardware.fast_bf16()
    import torch

    assert TrialContext(fast_bf16=False).work_dtype == torch.float32
    assert TrialContext(fast_bf16=True).work_dtype == torch.bfloat16
    assert TrialContext(device="cuda").work_dtype == torch.bfloat16


def test_a_cpu_build_of_torch_sees_no_cuda_without_importing_torch(monkeypatch):
    import torch

    from qadvisor.core import hardware

    assert hardware._cuda_available() == torch.cuda.is_available()  # the shortcut agrees with torch here
    assert hardware._cpu_build("2.13.0+cpu") and not hardware._cpu_build("2.13.0+cu128")
    assert not hardware._cpu_build("2.13.0")  # a plain version (CUDA wheels on PyPI) asks torch
    monkeypatch.setattr(hardware.metadata, "version", lambda name: "2.13.0+cu128")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA build on a GPU machine: torch decides
    assert hardware._cuda_available() and hardware.resolve_device("auto") == "cuda"
    monkeypatch.setattr(hardware.metadata, "version", lambda name: "2.13.0+cpu")
    assert hardware.resolve_device("auto") == "cpu"
