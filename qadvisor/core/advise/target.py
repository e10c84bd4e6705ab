"""Advice for the model the team will deploy (`--plan-for Qwen2.5-72B`), built from numbers that each say what they
are: size and memory from the planner (estimate), speed projected from slices measured here (or, for a GPU that
is not here, the planner's bandwidth bound), and accuracy streamed on the planned model's own weights where it has them
(core.measure.streamed, in the export), else published at its size (core.advise.evidence). A method whose loss at that
size nobody measured or published keeps the proxy's accuracy, labelled so, and is not recommended unless the
priorities accept unverified accuracy.
"""

from __future__ import annotations

from qadvisor import format as f
from qadvisor.bundled import package_data
from qadvisor.core import architectures
from qadvisor.core.advise.advisor import advise
from qadvisor.core.advise.evidence import evidence
from qadvisor.core.plan import planner
from qadvisor.schemas.export import GGUF_EMULATED, RunExport, TargetAdvice
from qadvisor.schemas.method import weights_name
from qadvisor.schemas.plan import Plan, PlanRow
from qadvisor.schemas.priorities import Priorities
from qadvisor.schemas.result import TrialResult


def _speed(plan: Plan, row: PlanRow) -> tuple[float | None, float | None, str, str]:
    """Decode tok/s, its spread, the basis and its kind: projected here, read from disk where the weights do not fit
    in RAM (a speed the target can reach, not the in-memory projection), or the bound for a GPU target not here."""
    if plan.target.device_type == "gpu":  # no spread: a bound is no measurement
        return (row.decode_tok_s_bound, None,
                f"estimate: bandwidth bound on {target_label(plan)} ({plan.target.bandwidth_source})", "bound")
    if not row.fits and row.method.startswith("gguf-"):
        if not row.streamed_decode_tok_s:
            return None, None, "", ""
        return (row.streamed_decode_tok_s, None, f"estimate: too big for this machine's RAM, llama.cpp reads its "
                f"{f.gib(row.weights_bytes)} from disk each token at the {plan.disk_read_gb_s:.2f} GB/s "
                "measured here", "estimate")
    p = row.projection
    if p is None or p.decode_tok_s is None:
        return None, None, "", ""
    low, high = p.decode_tok_s_range or (p.decode_tok_s, p.decode_tok_s)
    caveats = (f", per-layer time × {p.layer_bytes_ratio:.2f} for llama.cpp's layer mix (estimate)"
               if p.layer_bytes_ratio != 1.0 else "")
    if high is None:  # the slices' repeats allow any speed: no faster than reading the weights once a token
        high = max(row.decode_tok_s_bound, p.decode_tok_s)
        caveats += (f"; its range has no upper end from the slices (too noisy), the bandwidth bound "
                    f"{row.decode_tok_s_bound:.3g} tok/s taken as one")
    depths = f"{p.layers_measured[0]}- and {p.layers_measured[1]}-layer slices"
    if "+" in row.method:  # a KV stack: slices time its weights; the cache's (de)quantizing is not in the projection
        depths += f" of {weights_name(row.method)} alone, the KV cache's own time not in it"
    if p.capped_at_bound:  # an older export's plan
        return (p.decode_tok_s, high - low,
                f"the bandwidth bound here: the projection from {depths} exceeded it (noise)", "projected")
    if p.above_bound:
        return (p.decode_tok_s, high - low, f"projected from {depths}{caveats}, above this machine's bandwidth bound of "
                f"{p.above_bound:.3g} tok/s (noise, or a bound measured low: an uncertain figure)", "projected")
    return p.decode_tok_s, high - low, f"projected from {depths}{caveats}", "projected"


def target_label(plan: Plan) -> str:
    """The target as the user named it: `this` machine, or a GPU kind and how many (A100-80GB ×2)."""
    t = plan.target
    return t.name + (f" ×{t.count}" if t.count > 1 else "")


def target_results(export: RunExport, plan: Plan) -> tuple[list[TrialResult], dict[str, str]]:
    """One result per method measured on the proxy that the plan can speak for; and why each other one is left out."""
    rows = {r.method: r for r in plan.plans}
    results, left_out = [], {}
    bf16 = _bf16_bytes(plan)
    for proxy in export.results:
        if proxy.status != "ok":
            continue
        row = rows.get(proxy.method)
        speed, spread, basis, kind = _speed(plan, row) if row else (None, None, "", "")
        if row is None or not speed:
            left_out[proxy.method] = _why_left_out(proxy.method, plan, row)
            continue
        results.append(proxy.model_copy(update={
            "size_bytes": row.weights_bytes, "weights_mem_bytes": row.weights_bytes,
            "compression_ratio": bf16 / row.weights_bytes, "size_reduction_pct": row.size_reduction_pct,
            # the proxy's CV says nothing of a projection (its range is the spread) or of a bound (no noise)
            "decode_tok_s": speed, "decode_tok_s_spread": spread, "decode_cv": None,
            "prefill_tok_s": None if kind == "estimate" else row.projected_prefill_tok_s,  # in RAM: not reachable
            "prefill_tok_s_spread": None, "ttft_ms": None, "peak_rss_bytes": None, "quantize_s": None, "total_s": None,
            "device": f"{plan.model} ({basis})", "kv_cache_bytes": row.kv_cache_bytes,
            "decode_kind": kind,
            # what the run here ran with says nothing of a GPU that is not here
            "notes": [] if plan.target.device_type == "gpu" else proxy.notes, "safe_config": None,
            **_machine(row, kind), "decode_earlier": [],  # the proxy's own history says nothing of the planned model's
            **_accuracy(plan.model, proxy, export, f"size: estimate (planner) · decode: {basis}"),
        }))
    return results, left_out


def _machine(row, kind: str) -> dict:
    """How busy the machine was while the slices behind a projected speed were timed (None for a bound or an
    estimate, which nothing timed): a projection from a busy machine is marked as the trials are."""
    p = row.projection if kind == "projected" else None
    return {"cpu_contention": p.cpu_contention if p else None, "pace_ratio": p.pace_ratio if p else None}


def _accuracy(model: str, proxy: TrialResult, export: RunExport, basis: str) -> dict:
    """The target result's accuracy fields: the run's own where the planned model is the model measured, else streamed on
    the planned model's own weights, else published at the planned model's size, else the proxy's, labelled so."""
    proxy_name = export.model.name
    if model == proxy_name:
        return {"accuracy_basis": "measured", "reason": f"{basis} · accuracy: measured on {model} in this run"}
    streamed = _streamed(export, model, proxy.method)
    if streamed is not None:
        streamed["reason"] = f"{basis} · accuracy: {streamed['reason']}"
        return streamed
    found = evidence(model, proxy.method)
    if found is None:
        tailor = (f"; a mix is made from a model's own sensitivities: without {model}'s weights (--plan-for DIR) "
                  f"none is tailored to it" if proxy.mix is not None else "")
        return {"accuracy_basis": "proxy",
                "reason": f"{basis} · accuracy: the proxy's ({proxy_name}); not known at {model}'s size{tailor}"}
    return {"accuracy_basis": "published", "ppl": None, "ppl_delta_pct": found.ppl_delta_pct,
            "score_delta_pct": found.score_delta_pct, "kl_mean": found.kl_mean, "top1_agreement": found.top1,
            "reason": f"{basis} · accuracy: published: {found.figure}; source: {found.source}"}


def _streamed(export: RunExport, model: str, method: str) -> dict | None:
    """The accuracy fields from the planned model's own weights, streamed layer by layer in this run."""
    s = export.streamed
    found = next((m for m in s.methods if m.method == method and m.ppl is not None), None) if s and s.model == model \
        else None
    if found is None:
        return None
    weights = " (random weights: a synthetic checkpoint, so the loss says nothing of a trained model)" \
        if s.random_weights else ""
    return {"accuracy_basis": "streamed", "ppl": found.ppl, "ppl_delta_pct": found.ppl_delta_pct,
            "kl_mean": found.kl_mean, "top1_agreement": found.top1_agreement,
            "reason": f"streamed on {model}'s own weights, layer by layer, over "
                      f"{s.eval_text.words(s.tokens) if s.eval_text else f'{s.tokens} tokens'}{weights}"
                      + (f"; {GGUF_EMULATED}" if method.startswith("gguf-") else "")
                      + (f"; the mix made for {model} from its own streamed sensitivities: "
                         f"{found.mix.bits_per_weight:.2f} bits per weight, its matrices "
                         f"{found.mix.matrix_bytes / f.GIB:.2f} GiB by their types" if found.mix else "")}


def _why_left_out(method: str, plan: Plan, row: PlanRow | None) -> str:
    if row is None and planner.format_for(weights_name(method)) is not None:
        return f"not timed on slices of {plan.model} (each method costs minutes there; add it to the target methods)"
    if row is None:
        return "the planner has no entry for it"
    if not row.fits and row.method.startswith("gguf-") and plan.target.device_type == "cpu":
        return "too big for this machine's RAM, and the disk's read rate, which would set its speed, was not measured"
    return "no projected speed: " + ("not measured on slices" if row.projection is None
                                     else row.projection.basis.rsplit("; ", 1)[-1])


def _bf16_bytes(plan: Plan) -> int:
    """From the plan (a model given as a folder has no name the planner could resolve later); older exports' plans
    lack it and name a built-in architecture."""
    if plan.bf16_bytes is not None:
        return plan.bf16_bytes
    arch = architectures.resolve_architecture(plan.model)
    return planner.weights_bytes(arch, planner.formats()["bf16"])[0]


def published(model: str) -> dict | None:
    """Qwen's published accuracy of its quantized releases of the same size, with the source (None if none)."""
    data = package_data("qwen2-published-accuracy.json")
    size = model.split("-")[-1]
    name = next((n for n in data["benchmarks"] if n.split("-")[1] == size), None)
    if name is None:
        return None
    return {"model": name, "columns": data["columns"], "rows": data["benchmarks"][name], "source": data["source"],
            "note": data["note"]}


def published_speed(model: str) -> dict | None:
    """Qwen's published A100 decode speeds of its own releases of this size, with the source (None if none)."""
    data = package_data("qwen2.5-published-speed.json")
    rows = data["speed"].get(model)
    return None if rows is None else {"model": f"{model}-Instruct", "engines": rows, "source": data["source"],
                                      "note": data["note"]}


def compare_picks(proxy: RunExport, target: list[TrialResult], target_pick: str | None, model: str,
                  where: str = "here") -> list[str]:
    """When the target advice's pick differs from the proxy's: the decode ratio of the two at both shapes."""
    proxy_pick = proxy.recommendation.method if proxy.recommendation else None
    if not (proxy_pick and target_pick):
        return []
    if proxy_pick == target_pick:
        return [f"the same pick as on {proxy.model.name}: {target_pick}"]
    at_target = {r.method: r.decode_tok_s for r in target}
    at_proxy = {r.method: r.decode_tok_s for r in proxy.results if r.status == "ok"}
    line = f"the pick differs from {proxy.model.name}'s ({proxy_pick})"
    if proxy_pick in at_target and target_pick in at_proxy:
        big = at_target[target_pick] / at_target[proxy_pick]
        small = at_proxy[target_pick] / at_proxy[proxy_pick]
        line += (f": at the {model} shape {target_pick} decodes {big:.2f}× as fast as {proxy_pick} {where}; on "
                 f"{proxy.model.name} it was {small:.2f}×")
    else:
        line += f": {proxy_pick} has no projected speed for {model}"
    return [line]


def target_advice(export: RunExport, plan: Plan, priorities: Priorities) -> TargetAdvice:
    results, left_out = target_results(export, plan)
    unverified = [r.method for r in results if r.accuracy_basis == "proxy"]
    eligible = results if priorities.accept_unverified_accuracy else [r for r in results if r.method not in unverified]
    rec = advise(eligible, priorities, where=f"for {plan.model}", unfit=_unfit(plan)) if eligible else None
    note = _evidence_note(plan.model, unverified, bool(eligible), priorities.accept_unverified_accuracy)
    where = f"on {target_label(plan)} (bandwidth bounds)" if plan.target.device_type == "gpu" else "here"
    return TargetAdvice(model=plan.model, target=target_label(plan), results=results, recommendation=rec,
                        left_out=left_out, published=published(plan.model),
                        published_speed=published_speed(plan.model) if plan.target.device_type == "gpu" else None,
                        comparison=compare_picks(export, results, rec.method if rec else None, plan.model, where),
                        accuracy_note=note)


def _unfit(plan: Plan) -> dict[str, str]:
    """The methods the target cannot hold (method → why): over the GPUs asked for, or over this machine's RAM for a
    backend that must load every weight (llama.cpp reads a GGUF file that does not fit from disk: slow, but it runs,
    and it is ranked by that speed)."""
    where = target_label(plan)
    if plan.target.device_type == "gpu":
        return {r.method: f"does not fit {where}" + (f" (needs {r.devices_needed} GPUs)" if r.devices_needed else "")
                for r in plan.plans if not r.fits}
    return {r.method: "does not fit in this machine's RAM" for r in plan.plans
            if not r.fits and not r.method.startswith("gguf-")}


def _evidence_note(model: str, unverified: list[str], any_eligible: bool, accepted: bool) -> str:
    """Which methods the advice for the target leaves out for want of accuracy evidence at its size, and why."""
    if not unverified:
        return ""
    names = ", ".join(unverified)
    if accepted:
        return (f"{names}: no published accuracy at {model}'s size; picked among the others on the accuracy of the "
                "small model (--accept-unverified-accuracy), which quantization barely hurts")
    lead = "" if any_eligible else f"no method here has published accuracy at {model}'s size, so none is recommended. "
    return (f"{lead}{names}: not recommended for {model}: nobody published its loss at this size, and the small "
            "model's says little (quantization barely hurts it). Measure a method with published figures too (GGUF, "
            "gptq-int8, gptq-int4, awq-int4; among the methods and the target methods), or accept unverified accuracy "
            "to pick on the small model's accuracy")
