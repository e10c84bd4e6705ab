"""What the machine is: detected once, carried by every result so numbers stay tied to hardware."""

from __future__ import annotations

from pydantic import BaseModel


class GpuInfo(BaseModel):
    index: int
    name: str
    vram_bytes: int
    compute_capability: str | None = None
    driver: str | None = None


class BackendAvailability(BaseModel):
    backend: str
    available: bool
    reason: str  # why not, or the version found
    methods: list[str]


class HardwareInfo(BaseModel):
    cpu_model: str
    physical_cores: int
    logical_cores: int
    isa_flags: list[str]  # of AVX2, AVX512F, AMX, NEON, ...
    ram_total_bytes: int
    ram_available_bytes: int
    disk_free_bytes: int
    os: str
    python: str
    torch: str | None = None
    cuda: str | None = None
    gpus: list[GpuInfo] = []
    gpu_note: str = ""  # "no GPU: ..." when NVML is absent
    backends: list[BackendAvailability] = []

    def label(self, device: str, threads: int) -> str:
        """Short name of where a trial runs, e.g. `cpu: AMD EPYC 7B13, 2 threads` or `cuda: NVIDIA H100`."""
        if device.startswith("cuda") and self.gpus:
            return f"cuda: {self.gpus[0].name}"
        return f"cpu: {self.cpu_model}, {threads} threads"
