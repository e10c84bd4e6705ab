"""Bytes that tensors hold, quantized tensor subclasses unpacked: what a backend's model and a KV cache take."""

from __future__ import annotations

import torch


def nbytes(tensor) -> int:
    """Bytes of a tensor's data; tensor subclasses (quantized weights or caches) are unpacked into their parts."""
    if type(tensor) is not torch.Tensor and hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(nbytes(getattr(tensor, name)) for name in names)
    return tensor.untyped_storage().nbytes() if tensor.device.type != "meta" else 0


def tensor_bytes(model, tensors=None) -> int:
    """Bytes of every tensor in the model's state (or of `tensors`), quantized subclasses unpacked, shared storage
    counted once."""
    seen: set[int] = set()

    def count(tensor) -> int:
        if type(tensor) is not torch.Tensor and hasattr(tensor, "__tensor_flatten__"):
            names, _ = tensor.__tensor_flatten__()
            return sum(count(getattr(tensor, name)) for name in names)
        if tensor.untyped_storage().data_ptr() in seen:  # tied weights share one storage
            return 0
        seen.add(tensor.untyped_storage().data_ptr())
        return nbytes(tensor)

    if tensors is None:
        tensors = model.state_dict().values()
    return sum(count(v) for v in tensors if isinstance(v, torch.Tensor))

