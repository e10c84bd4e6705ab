"""Detect the machine: CPU, ISA, memory, disk, torch/CUDA and NVIDIA GPUs through NVML."""

from __future__ import annotations

import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

import psutil

from qadvisor.core import paths
from qadvisor.errors import UserError
from qadvisor.format import GIB
from qadvisor.quantizers import fallback, registry
from qadvisor.schemas.hardware import GpuInfo, HardwareInfo

ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_bf16": "AVX512_BF16", "amx_tile": "AMX", "fma": "FMA"}


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    found = [name for flag, name in ISA_FLAGS.items() if flag in flags]
    if "asimd" in flags or platform.machine() in ("arm64", "aarch64"):
        found.append("NEON")
    return model, found


def detect_gpus() -> tuple[list[GpuInfo], str]:
    """NVIDIA GPUs via NVML; an absent driver library simply means "no GPU"."""
    try:
        import pynvml  # from the nvidia-ml-py package
    except ImportError:
        return [], "no GPU: nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return [], "no GPU: NVIDIA driver library (NVML) not found"
    except pynvml.NVMLError as exc:
        return [], f"no GPU: NVML failed to start ({exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                GpuInfo(
                    index=i,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    vram_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    compute_capability=f"{major}.{minor}",
                    driver=_text(driver),
                )
            )
        return gpus, "" if gpus else "no GPU: NVML found no devices"
    finally:
        pynvml.nvmlShutdown()


def fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively; without AVX512_BF16 or AMX torch emulates it, several times slower
    than fp32, so quantizers work in fp32 there (TrialContext.work_dtype). QADVISOR_FAST_BF16=0 or 1 overrides the
    flags (with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 an AVX-512 machine then behaves as an AVX2 one)."""
    forced = os.environ.get("QADVISOR_FAST_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool({"AVX512_BF16", "AMX"} & set(_cpuinfo()[1]))


def check_environment() -> None:
    """QADVISOR_FAST_BF16 is 0, 1 or unset: anything else is one UserError line before anything runs."""
    forced = os.environ.get("QADVISOR_FAST_BF16")
    if forced not in (None, "", "0", "1"):
        raise UserError(f"$QADVISOR_FAST_BF16={forced!r}: write 1 (the CPU computes bf16 natively), 0 (it does not) "
                        "or leave it unset (qadvisor reads the CPU's flags)")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_versions() -> tuple[str | None, str | None]:
    if not _cuda_available():
        return _torch_version(), None
    import torch

    return _torch_version(), torch.version.cuda


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _cuda_available() -> bool:
    """Whether torch sees a GPU. A CPU wheel of torch (`2.13.0+cpu`) sees none whatever the machine has: no need to
    import torch (a second or two of the command's start, before any trial) to ask it."""
    version = _torch_version()
    if version is None or _cpu_build(version):
        return False
    import torch

    return torch.cuda.is_available()


def _cpu_build(version: str) -> bool:
    return version.endswith("+cpu")


def detect(with_backends: bool = True) -> HardwareInfo:
    """Everything `qadvisor hardware` shows; each trial result carries its label."""
    cpu_model, flags = _cpuinfo()
    memory = psutil.virtual_memory()
    gpus, gpu_note = detect_gpus()
    torch_version, cuda_version = _torch_versions()
    info = HardwareInfo(
        cpu_model=cpu_model,
        physical_cores=physical_cores(),
        logical_cores=os.cpu_count() or 1,
        isa_flags=flags,
        ram_total_bytes=memory.total,
        ram_available_bytes=memory.available,
        disk_free_bytes=shutil.disk_usage(Path.cwd()).free,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        torch=torch_version,
        cuda=cuda_version,
        gpus=gpus,
        gpu_note=gpu_note,
    )
    if with_backends:
        from qadvisor.quantizers import registry

        info.backends = registry.availability(has_cuda=cuda_version is not None)
        findings = backend_findings()
        for row in info.backends:
            if row.available and row.backend in findings:
                row.reason += f"; {findings[row.backend]}"
    return info


def backend_findings() -> dict[str, str]:
    """What earlier runs found out about a backend on this machine (kept in the cache's probes), by backend: that its
    fast path crashed here and which safe configuration it runs in. `qadvisor hardware` and `methods` say it."""
    found, where = {}, paths.probe_dir(paths.default_cache_dir())
    for backend in registry.backends().values():
        verdict = fallback.kept(where, backend.name, backend.build_key())
        if verdict is not None and verdict.level > 0:
            found[backend.name] = verdict.note(backend.safe_configs)
    return found


def resolve_device(requested: str) -> str:
    """`auto` → cuda when torch sees a GPU, else cpu; `cuda` without one is a UserError."""
    if requested == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if requested == "cuda" and not _cuda_available():
        raise UserError("--device cuda: no CUDA device is visible to torch here")
    return requested


def physical_cores() -> int:
    """This machine's physical cores: the trials' default thread count, one per core."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def where_to_run(device: str, threads: int | None, hw: HardwareInfo) -> tuple[str, int]:
    """The device a run measures on (`auto` resolved) and its threads: those asked for, else one per physical core
    — the one place these defaults are worked out."""
    return resolve_device(device), threads or hw.physical_cores


def hardware_kind(hw: HardwareInfo) -> str:
    """Machines that measure alike: same CPU, cores, instruction sets, RAM (to the GiB) and GPUs."""
    gpus = ", ".join(f"{g.name} {round(g.vram_bytes / GIB)} GiB" for g in hw.gpus) or "no GPU"
    return (f"{hw.cpu_model}, {hw.physical_cores} cores, {', '.join(hw.isa_flags) or 'no SIMD flags'}, "
            f"{round(hw.ram_total_bytes / GIB)} GiB RAM, {gpus}")
