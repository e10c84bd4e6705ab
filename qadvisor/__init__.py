"""qadvisor: measure real quantizers on a real Qwen model and recommend one."""

__version__ = "0.1.0"
