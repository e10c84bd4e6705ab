"""The interface every backend implements, and the few helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers.fallback import SafeConfig, versions_key
from qadvisor.quantizers.storage import StorageFormat

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

ProgressFn = Callable[[str, "float | None", str], None]


@dataclass
class TrialContext:
    """What a backend needs besides the spec: where to run and what to calibrate on."""

    device: str = "cpu"  # "cpu" or "cuda"
    calib_texts: list[str] = field(default_factory=list)
    threads: int = 1
    max_tokens: int = 512  # the longest sequence a trial feeds the model (runtimes that preallocate use it)
    # False for random weights (slices, synthetic models): a calibrated method rounds to nearest instead, in the
    # same format and kernel (its size and speed), since calibrating on random weights would mean nothing
    calibrate: bool = True
    fast_bf16: bool = False  # the CPU computes bf16 natively (AVX512_BF16 or AMX): core.hardware decides
    probe_dir: Path | None = None  # where a backend keeps what it probed once per machine (the cache); None: nowhere
    safe_level: int = 0  # how many of the backend's safe configurations are on (Backend.safe_configs)
    progress: ProgressFn = lambda step, fraction, message: None

    @property
    def compute_dtype(self):
        import torch

        # bf16 matmuls are several times slower than fp32 on CPUs without AVX512_BF16/AMX.
        return torch.float32 if self.device == "cpu" else torch.bfloat16

    @property
    def work_dtype(self):
        """The dtype a quantizer works in while quantizing: bf16 where it is fast (a GPU, or a CPU with AVX512_BF16
        or AMX), fp32 elsewhere: on an AVX2-only CPU bf16 matmuls are emulated and GPTQ took minutes for 8 layers."""
        import torch

        return torch.bfloat16 if self.device != "cpu" or self.fast_bf16 else torch.float32


# torch's own fast paths (AVX-512 and AMX kernels, bf16 work) off: what every torch-based backend falls back on
TORCH_SAFE = SafeConfig(name="torch AVX2, fp32", fp32_work=True,
                        turns_off="torch's AVX-512/AMX kernels and bf16 quantizing (ATEN_CPU_CAPABILITY=avx2)",
                        env={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})


class Backend:
    """A quantization library. Subclasses declare methods and implement quantize / save / load."""

    name: str = ""
    package: str = ""  # distribution name checked for availability, without importing it
    also_needs: tuple[str, ...] = ()  # further distributions the backend imports
    min_version: str | None = None
    methods: tuple[MethodSpec, ...] = ()
    storage: tuple[StorageFormat, ...] = ()  # how each method stores its weights: what the planner sizes
    cpu_methods: frozenset[str] | None = None  # None: every method runs on CPU
    install_hint: str = ""
    stand_in: str = ""  # the one method `qadvisor doctor` runs for this backend: the path a user meets first
    calibrated = False  # quantizing reads the calibration text: every method's default (Backend.calibrates)
    calib_min_tokens = 0  # a calibration paragraph shorter than this is skipped; a text with none is refused up front
    # what a trial says when it ran without calibration (TrialContext.calibrate False); '' for methods that need none
    uncalibrated_note: str = ""
    # where a trial goes when the fast path dies of a fatal signal, in order (quantizers.fallback)
    safe_configs: tuple[SafeConfig, ...] = (TORCH_SAFE,)
    # why this backend leaves an MoE layer's experts unquantized ('' where it quantizes them): transformers 5 holds
    # them as fused 3-D parameters, which a backend that swaps nn.Linear modules never sees. A run refuses such a
    # method on an MoE model (never a silent skip); the planner sizes its experts as kept in bf16
    experts_left: str = ""
    # model families (schemas.architecture.FAMILIES) this backend cannot run, with why
    refused_families: dict[str, str] = {}

    def family_problem(self, spec: MethodSpec, family: str, moe: bool) -> str:
        """Why this backend cannot quantize a model of `family` with `spec` ('' where it can)."""
        if family in self.refused_families:
            return self.refused_families[family]
        return f"it leaves an MoE model's experts unquantized: {self.experts_left}" if moe and self.experts_left else ""

    def uncalibrated_note_for(self, model_dir: Path) -> str:
        """`uncalibrated_note` for this model (a backend may round some families in another way)."""
        return self.uncalibrated_note

    def calibrates(self, spec: MethodSpec) -> bool:
        """Whether quantizing `spec` reads the calibration text (its content is then part of the artifact's key)."""
        return self.calibrated and spec.source is None

    def build_key(self) -> str:
        """Which build of the backend runs on which CPU: a kept fallback verdict holds for this key only."""
        return versions_key((self.package, *self.also_needs))

    def available(self, has_cuda: bool) -> tuple[bool, str]:
        """Whether this backend can run here, and why not (or which version was found)."""
        if self.package:
            try:
                version = metadata.version(self.package)
            except metadata.PackageNotFoundError:
                return False, f"{self.package} is not installed ({self.install_hint})"
            if self.min_version and _older(version, self.min_version):
                return False, f"{self.package} {version} is older than {self.min_version}"
            for other in self.also_needs:
                try:
                    metadata.version(other)
                except metadata.PackageNotFoundError:
                    return False, f"{other} is not installed ({self.install_hint})"
            return True, f"{self.package} {version}"
        return True, "built in"

    def method_available(self, spec: MethodSpec, has_cuda: bool) -> tuple[bool, str]:
        ok, reason = self.available(has_cuda)
        if ok and not has_cuda and self.cpu_methods is not None and spec.name not in self.cpu_methods:
            return False, f"{spec.name} needs a CUDA GPU ({self.package} has no CPU kernel for it)"
        return ok, reason

    def method_named(self, name: str) -> MethodSpec | None:
        """A method whose name carries its parameters (gguf-mix@4.2bpw): its spec, or None where `name` is no such
        form of this backend's (`method_forms` lists them); a malformed parameter is a UserError."""
        return None

    method_forms: tuple[MethodSpec, ...] = ()  # the forms method_named takes, as `qadvisor methods` shows them

    def model_problem(self, spec: MethodSpec, arch) -> None:
        """A UserError where `spec` cannot be made for this model as asked (a budget below its smallest mix)."""

    def made_with(self, save_dir: Path) -> Any:
        """What the saved model's choices were, for its result (a GGUF mix's types); None for most methods."""
        return None

    def quantize(self, model_dir: Path, spec: MethodSpec, ctx: TrialContext) -> Any:
        raise NotImplementedError

    def save(self, model: Any, spec: MethodSpec, out_dir: Path) -> None:
        raise NotImplementedError

    def load(self, out_dir: Path, spec: MethodSpec, ctx: TrialContext) -> Any:
        """Reload the saved model for measuring; returns a torch module with an HF causal-LM forward."""
        raise NotImplementedError

    def memory_bytes(self, model: Any) -> int:
        """Bytes of the weights the reloaded model holds."""
        from qadvisor.quantizers.tensors import tensor_bytes

        return tensor_bytes(model)

    def notes(self, model: Any) -> list[str]:
        """What the reloaded model runs with that its results must say (a kernel left out on this machine)."""
        return []

    # streamed accuracy (core.measure.streamed): a checkpoint measured one decoder layer at a time
    streamed_methods: frozenset[str] = frozenset()  # the methods whose layers this backend quantizes one by one
    streams_experts = False  # stream_layer quantizes an MoE layer's fused experts too (not only its nn.Linear modules)

    def stream_layer(self, layer: Any, spec: MethodSpec, ctx: TrialContext, place: LayerPlace) -> Any:
        """One decoder layer (its weights bf16, as the checkpoint holds them) quantized as this method's whole-model
        trial quantizes each layer, and computing as its reloaded model does (in `stream_dtype`)."""
        raise NotImplementedError(f"{spec.name} is not quantized one layer at a time")

    def stream_dtype(self, spec: MethodSpec):
        """The dtype the reloaded model computes in (its activations and unquantized tensors)."""
        import torch

        return torch.float32

    def stream_table(self, spec: MethodSpec, role: str, rows: Any, place: LayerPlace) -> Any:
        """Rows of the embedding (`role` "embed") or the output head ("head") as the reloaded model computes with
        them; most methods leave both unquantized."""
        return rows

    def stream_calibration(self, model_dir: Path, texts: list[str]) -> list[list[int]] | None:
        """The token ids a calibrated method solves each layer on (its whole-model trial's samples); None: none."""
        return None

    def stream_head_input(self, spec: MethodSpec, hidden: Any, place: LayerPlace) -> Any:
        """The final hidden states as the head's matmul reads them (llama.cpp rounds them to 8 bits)."""
        return hidden


@dataclass
class LayerPlace:
    """Where a decoder layer sits in its model (llama.cpp's mixes choose a type by position), and for a calibrated
    method the calibration stream at its input: `calib` hidden states, one per sample, that `run(layer, x)` carries
    through a layer; the method replaces them with its quantized layer's outputs, as it does whole."""

    index: int
    arch: Any  # schemas.plan.Architecture
    threads: int = 1
    calib: list | None = None
    run: Callable | None = None
    types: dict | None = None  # a GGUF mix's type per matrix, by GGUF name (quantizers.ggufmix)


# the fused kernels transformers runs a linear-attention layer with where they are installed (else its torch path)
LINEAR_ATTENTION_KERNELS = ("fla", "causal_conv1d")


def linear_attention_fallback(model) -> str:
    """'' unless `model` (a transformers model) has linear-attention layers and runs them on transformers' reference
    torch path because the fused kernels are absent here: then a note that its speed is that path's."""
    types = getattr(getattr(model, "config", None), "get_text_config", lambda: None)()
    if "linear_attention" not in (getattr(types, "layer_types", None) or []):
        return ""
    return torch_linear_attention_note()


def torch_linear_attention_note() -> str:
    """'' where the fused linear-attention kernels are installed, else what running without them means."""
    from importlib.util import find_spec

    missing = [name for name in LINEAR_ATTENTION_KERNELS if find_spec(name) is None]
    if not missing:
        return ""
    return (f"linear attention ran transformers' reference torch path ({', '.join(missing)} not installed here): "
            "slower than the fused kernels a deployment would use")


def plain_linears(module) -> dict[str, Any]:
    """The plain nn.Linear submodules of a module by name: what a layer-wise quantizer replaces."""
    import torch

    return {name: m for name, m in module.named_modules() if type(m) is torch.nn.Linear}


def _older(version: str, minimum: str) -> bool:
    from packaging.version import Version

    return Version(version) < Version(minimum)


def weights_bytes_on_disk(directory: Path) -> int:
    """Bytes of the weight files a method saved (configs and tokenizer left out); of the file itself for a file, with
    its other parts for a split GGUF."""
    if Path(directory).is_file():
        from qadvisor.quantizers.checkpoint import gguf_parts

        return sum(part.stat().st_size for part in gguf_parts(Path(directory)))
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def load_hf(model_dir: Path, dtype, device: str, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, device_map=device, **kwargs)


def empty_hf(model_dir: Path, dtype):
    """The model's architecture with uninitialised weights, to load a quantized state dict into: drawing random
    weights only to overwrite them took 10 s of every reload at Qwen2.5-0.5B's shape. The caller loads every weight
    and then calls `tie_head`, since skipping the initialisation skips the tying too."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    with torch.device("cpu"), skipped_init():
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def skipped_init():
    """A context in which new modules' weights are left uninitialised (torch's and transformers' init functions do
    nothing): for modules whose every weight is loaded right after."""
    from transformers.initialization import no_init_weights

    return no_init_weights()


def tie_head(model):
    """Share the embedding with the head where the config ties them (the saved state dict leaves the copy out)."""
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


def untied_state_dict(model) -> dict:
    """The state dict without the tied lm_head copy: it shares the embedding's storage."""
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    return state


def use_compute_dtype(model, dtype):
    """Cast the plain (unquantized) float tensors, such as embeddings, norms and biases, to `dtype`.

    Quantized weights are tensor subclasses or integer buffers and stay as they are, so the file on disk
    keeps its bf16 storage while the CPU computes in fp32.
    """
    return tie_head(cast_plain(model, dtype))


def cast_plain(model, dtype):
    """`use_compute_dtype` for any module (a decoder layer has no config to tie a head by)."""
    import torch

    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or not tensor.is_floating_point():
                continue
            if tensor.dtype == dtype:
                continue
            cast = tensor.data.to(dtype)
            if isinstance(tensor, torch.nn.Parameter):
                setattr(module, name, torch.nn.Parameter(cast, requires_grad=False))
            else:
                module._buffers[name] = cast
    return model
