"""What `qadvisor doctor` found: each backend quantized and decoded a tiny model in its own processes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class DoctorRow(BaseModel):
    backend: str
    method: str  # the one method that stood for the backend
    verdict: Literal["works", "works with a fallback", "fails", "not installed"]
    detail: str = ""  # the decode speed; the safe configuration and why; why it failed (with its log)
    seconds: float | None = None


class DoctorReport(BaseModel):
    created_at: str
    cpu: str
    isa_flags: list[str]
    threads: int
    cpu_contention: float  # the share of the CPU other processes took while the doctor started (core.contention)
    rows: list[DoctorRow]
    total_s: float
