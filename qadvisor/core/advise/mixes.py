"""A GGUF mix against the uniform recipes measured beside it: the recipe whose size it was made within, and whether
it lost less there; its predicted loss against its measured one (the additivity check)."""

from __future__ import annotations

from qadvisor.schemas.result import TrialResult


def mixes(results: list[TrialResult]) -> list[TrialResult]:
    return [r for r in results if r.status == "ok" and r.mix is not None]


def uniform(results: list[TrialResult]) -> list[TrialResult]:
    """The measured GGUF recipes of one type rule (llama.cpp's own), with a size and a KL to compare."""
    return [r for r in results if r.status == "ok" and r.mix is None and r.backend == "llamacpp"
            and r.method.startswith("gguf-") and r.size_bytes and r.kl_mean is not None]


def nearest_uniform(mix: TrialResult, results: list[TrialResult]) -> TrialResult | None:
    """The smallest uniform recipe at least the mix's size (the one it was made within), else the largest below."""
    recipes = sorted(uniform(results), key=lambda r: r.size_bytes)
    return next((r for r in recipes if r.size_bytes >= mix.size_bytes), recipes[-1] if recipes else None)


def against_uniform(mix: TrialResult, results: list[TrialResult]) -> str:
    """`gguf-mix@…: at most gguf-q3_k_m's size (…), KL 49 % lower (…)`, or '' with no recipe or KL to compare."""
    other = nearest_uniform(mix, results)
    if other is None or mix.kl_mean is None or not other.kl_mean:
        return ""
    ratio = mix.size_bytes / other.size_bytes
    size = (f"within {other.method}'s size" if ratio <= 1 else f"{100 * (ratio - 1):.1f} % larger than {other.method}")
    change = mix.kl_mean / other.kl_mean - 1
    loss = f"KL {abs(100 * change):.0f} % {'lower' if change < 0 else 'higher'}"
    verdict = "beats it" if beats(mix, other) else "does not beat it"
    return (f"{mix.method} {verdict}: {size} ({mix.size_bytes:,} vs {other.size_bytes:,} bytes), "
            f"{loss} ({mix.kl_mean:.3g} vs {other.kl_mean:.3g} nats/token on the held-out text)")


def beats(mix: TrialResult, other: TrialResult) -> bool:
    """At most the other's size on disk and a lower KL on the held-out text."""
    if mix.kl_mean is None or other.kl_mean is None or not mix.size_bytes or not other.size_bytes:
        return False
    return mix.size_bytes <= other.size_bytes and mix.kl_mean < other.kl_mean


def prediction_error(mix: TrialResult) -> float | None:
    """Predicted KL ÷ measured KL − 1: how far the sum of single-matrix sensitivities lands from the file's KL."""
    if mix.mix is None or not mix.kl_mean:
        return None
    return mix.mix.predicted_kl / mix.kl_mean - 1


def advice_line(method: str, results: list[TrialResult]) -> str:
    """What the advice says of mixes beside its pick: a mix picked, against its uniform recipe; a uniform recipe
    picked, any mix made within its size that lost less ('' where neither)."""
    picked = next((r for r in results if r.method == method and r.status == "ok"), None)
    if picked is None:
        return ""
    if picked.mix is not None:
        return against_uniform(picked, results)
    better = [r for r in mixes(results) if nearest_uniform(r, results) is picked and beats(r, picked)]
    return against_uniform(better[0], results) if better else ""
