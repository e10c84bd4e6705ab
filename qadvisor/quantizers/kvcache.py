"""KV-cache quantization: transformers' QuantizedCache with optimum-quanto's kernels, stacked on a weight method.

A KV method changes no weights, so it never runs alone: `bnb-nf4+kv-int4` quantizes the weights with bnb
and keeps keys and values in 4 bits while generating. The newest RESIDUAL_TOKENS stay in full precision
(the cache quantizes them in groups as they age), so short contexts are barely touched; the accuracy
scoring therefore decodes token by token after a short prompt (see `metrics.accuracy`).
"""

from __future__ import annotations

from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers.base import Backend

RESIDUAL_TOKENS = 32
GROUP = 64


class KVCacheBackend(Backend):
    name = "kvcache"
    stand_in = "fp32+kv-int4"  # a cache on the unquantized model
    package = "optimum-quanto"
    install_hint = "pip install optimum-quanto"
    methods = (
        MethodSpec(name="kv-int4", backend="kvcache", bits=4, scheme="int4", group_size=GROUP, component="kv-cache",
                   summary="KV cache in 4 bits (stack it: fp32+kv-int4)"),
        MethodSpec(name="kv-int2", backend="kvcache", bits=2, scheme="int2", group_size=GROUP, component="kv-cache",
                   summary="KV cache in 2 bits (stack it: fp32+kv-int2)"),
    )
    refused_families = dict.fromkeys(
        ("qwen3_next", "qwen3_5", "qwen3_5_moe"),
        "transformers' QuantizedCache takes models with full-attention layers only; a hybrid model's cache also holds "
        "its linear-attention layers' state")


def cache_factory(spec: MethodSpec, config):
    """A function that returns a fresh quantized cache for one generation."""
    from transformers.cache_utils import QuantizedCache

    def new_cache():
        return QuantizedCache(backend="quanto", config=config, nbits=int(spec.bits), q_group_size=spec.group_size,
                              residual_length=RESIDUAL_TOKENS)

    return new_cache


BACKEND = KVCacheBackend()
