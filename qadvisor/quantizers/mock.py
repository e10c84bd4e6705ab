"""MOCK backend for fast UI and runner tests. It does not quantize anything and is never offered to users:
the registry lists it only when QADVISOR_ENABLE_MOCK_BACKEND=1."""

from __future__ import annotations

from qadvisor.quantizers.base import Backend, empty_hf, load_hf, tie_head, untied_state_dict
from qadvisor.quantizers.fallback import FATAL_SIGNALS, SafeConfig
from qadvisor.schemas.method import MethodSpec

SAFE_ENV = "QADVISOR_MOCK_SAFE"  # set by the mock's safe configuration: the fallback's environment reached the trial


class MockBackend(Backend):
    name = "mock"
    methods = (
        MethodSpec(name="mock-passthrough", backend="mock", bits=32, scheme="fp32", summary="MOCK: saves the fp32 model unchanged"),
        # a quantized method in seconds, for tests that need a recommendation (a baseline is never one)
        MethodSpec(name="mock-int8", backend="mock", bits=8, scheme="int8", summary="MOCK: int8 per row, plain torch"),
        MethodSpec(name="mock-crash", backend="mock", bits=4, scheme="int4", summary="MOCK: fails while quantizing"),
        # faults a real library can cause, for the runner's fault tests: a segfault in native code, the OOM killer's
        # SIGKILL, a hang (the trial's timeout), and a disk that fills while saving
        MethodSpec(name="mock-segfault", backend="mock", bits=4, scheme="int4", summary="MOCK: segfaults"),
        MethodSpec(name="mock-sigkill", backend="mock", bits=4, scheme="int4", summary="MOCK: killed as by the OOM killer"),
        MethodSpec(name="mock-hang", backend="mock", bits=4, scheme="int4", summary="MOCK: never returns"),
        MethodSpec(name="mock-diskfull", backend="mock", bits=4, scheme="int4", summary="MOCK: the disk fills while saving"),
        MethodSpec(name="mock-oom", backend="mock", bits=4, scheme="int4",
                   summary="MOCK: runs out of memory (capped at 256 MiB above its size, so the machine never is)"),
        MethodSpec(name="mock-history", backend="mock", bits=32, scheme="fp32",
                   summary="MOCK: fails when measured in the process that quantized it"),
        # a fast path that dies of each fatal signal while the model is measured, and runs in the safe configuration
        *(MethodSpec(name=f"mock-fastpath-{sig.name.lower()}", backend="mock", bits=4, scheme="int4",
                     summary=f"MOCK: its fast path dies of {sig.name}") for sig in FATAL_SIGNALS),
    )
    safe_configs = (SafeConfig(name="mock safe path", turns_off="the mock's fast path", env={SAFE_ENV: "1"}),)
    streamed_methods = frozenset({"mock-passthrough", "mock-crash"})

    def stream_layer(self, layer, spec, ctx, place):
        import torch

        if spec.name == "mock-crash":
            raise RuntimeError("mock-crash always fails (test backend)")
        return layer.to(torch.float32)

    def quantize(self, model_dir, spec, ctx):
        import os
        import signal
        import time

        import torch

        if spec.name == "mock-crash":
            raise RuntimeError("mock-crash always fails (test backend)")
        if spec.name in ("mock-segfault", "mock-sigkill"):
            os.kill(os.getpid(), signal.SIGSEGV if spec.name == "mock-segfault" else signal.SIGKILL)
        while spec.name == "mock-hang":
            time.sleep(1)
        if spec.name == "mock-oom":
            _exhaust_memory()
        ctx.progress("quantize", 0.5, "MOCK: nothing to quantize")
        _quantized_here.add(spec.name)
        return load_hf(model_dir, torch.float32, ctx.device)

    def save(self, model, spec, out_dir):
        if spec.name == "mock-diskfull":
            import errno

            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))
        if spec.name == "mock-int8":
            _save_int8(model, out_dir)
            return
        model.save_pretrained(str(out_dir))

    def load(self, out_dir, spec, ctx):
        import os
        import signal

        import torch

        safe = ctx.safe_level >= 1 and os.environ.get(SAFE_ENV) == "1"
        if spec.name == "mock-history" and spec.name in _quantized_here:
            raise RuntimeError("measured in the process that quantized it")
        if spec.name.startswith("mock-fastpath-") and not safe:
            os.kill(os.getpid(), getattr(signal, spec.name.removeprefix("mock-fastpath-").upper()))
        if spec.name == "mock-int8":
            return _load_int8(out_dir)
        return load_hf(out_dir, torch.float32, ctx.device)


_quantized_here: set[str] = set()  # what this process quantized
INT8_FILE = "model-int8.safetensors"


def _save_int8(model, out_dir) -> None:
    """Each decoder linear's weight as int8 codes and a per-row scale; everything else in bf16."""
    import torch
    from safetensors.torch import save_file

    state = {}
    for key, value in untied_state_dict(model).items():
        if key.startswith("model.layers.") and key.endswith("proj.weight"):
            scale = value.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
            state[key + ".codes"] = torch.round(value / scale).to(torch.int8)
            state[key + ".scale"] = scale.float()
        else:
            state[key] = value.to(torch.bfloat16)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / INT8_FILE))
    model.config.save_pretrained(str(out_dir))


def _load_int8(out_dir):
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(out_dir / INT8_FILE))
    state = {k: v.float() for k, v in saved.items() if not k.endswith((".codes", ".scale"))}
    for key in [k.removesuffix(".codes") for k in saved if k.endswith(".codes")]:
        state[key] = saved[key + ".codes"].float() * saved[key + ".scale"]
    model = empty_hf(out_dir, torch.float32)
    model.load_state_dict(state, strict=False, assign=True)
    return tie_head(model)


def _exhaust_memory() -> None:
    """Allocate and touch memory until the allocator fails, as a quantizer too large for the machine does; the cap
    on this process's address space makes "the machine" 256 MiB larger than the process."""
    import resource

    with open("/proc/self/statm") as fh:
        size = int(fh.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (256 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
    held = []
    while True:
        held.append(bytearray(16 << 20))  # zero-filled: every page is touched


BACKEND = MockBackend()
