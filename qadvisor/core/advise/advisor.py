"""Turn measured results and priorities into a recommendation: archetype A/B/C, the method, and why.

Only measured numbers are used. Each metric is normalised among the candidates on a log scale (sizes, speeds
and KL divergences span orders of magnitude), then weighted by the user's normalised priorities.

The archetypes name types of team (the seed's wording): A for storage-bound, B for latency-bound, C for no
strong bias. The priorities say which team the user is; the answer is the best-scoring method among those
whose *measured* numbers put them in that archetype. An accuracy-bound team gets the best fit whatever its
archetype. When a method of another archetype scores higher on the same weights, the reasons say so.
"""

from __future__ import annotations

import math

from qadvisor import format as f
from qadvisor.core.contention import busy_labels, contended, drift, drifted, marked, ran_slow, slow_labels
from qadvisor.schemas.limits import LIMITS, missed
from qadvisor.schemas.priorities import Limits, Priorities
from qadvisor.schemas.recommendation import MethodScore, Recommendation, label_of
from qadvisor.schemas.result import TrialResult

KL_FLOOR = 1e-3  # nats/token; differences below this are noise on the held-out text
PPL_FLOOR = 1e-3  # a perplexity rise of 0.1 %: published figures have two or three digits
A_REDUCTION_PCT = 80.0  # the seed's "Tool A" bar, where it is reachable
NEAR_BEST = 0.10  # within 10 % of the best size (A) or speed (B) counts as "the" smallest / fastest
SMALL_LOSS_PPL_PCT = 5.0
LOW_COMPRESSION_PCT = 55.0  # the seed's B is "low compression": under the planner's C band (55–75 % smaller)
FLIP_FACTORS = (1.5, 2, 3, 5, 10)
STRONG_BIAS = 0.5  # one normalised weight at least as large as the other two together
TEAMS = {"A": "storage-bound", "B": "latency-bound", "C": "balanced (no strong bias)", None: "accuracy-bound"}


def violations(r: TrialResult, limits: Limits) -> list[str]:
    """Each hard limit the result misses, with the measured number and by how much."""
    return [miss for row in LIMITS
            if (limit := getattr(limits, row.field)) is not None and (miss := missed(row, r, limit))]


def _miss(r: TrialResult, limits: Limits) -> float:
    """How far outside the limits a result is, summed as relative misses (0 when it meets them all)."""
    return sum(row.miss(value, limit) for row in LIMITS
               if (limit := getattr(limits, row.field)) is not None and (value := row.metric(r)) is not None)


def _log_scale(values: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    logs = {k: math.log(v) for k, v in values.items()}
    lo, hi = min(logs.values()), max(logs.values())
    if hi - lo < 1e-12:
        return {k: 1.0 for k in values}
    return {k: (v - lo) / (hi - lo) if higher_is_better else (hi - v) / (hi - lo) for k, v in logs.items()}


def losses(results: list[TrialResult]) -> dict[str, float]:
    """Each method's accuracy loss on one scale for all: KL where every result has one, else the loss in % (the
    published evidence at a planned model's size is a perplexity or a benchmark score alone)."""
    if all(r.kl_mean is not None for r in results):
        return {r.method: max(r.kl_mean, 0.0) + KL_FLOOR for r in results}
    return {r.method: max(r.loss_pct or 0.0, 0.0) / 100 + PPL_FLOOR for r in results}


def metric_scores(results: list[TrialResult]) -> dict[str, dict[str, float]]:
    """Per method, storage / latency / accuracy each in [0, 1] (1 = best among these results)."""
    storage = _log_scale({r.method: r.size_bytes for r in results}, higher_is_better=False)
    latency = _log_scale({r.method: r.decode_tok_s for r in results}, higher_is_better=True)
    accuracy = _log_scale(losses(results), higher_is_better=False)
    return {r.method: {"storage": storage[r.method], "latency": latency[r.method], "accuracy": accuracy[r.method]}
            for r in results}


def rank(results: list[TrialResult], weights: dict[str, float]) -> list[tuple[str, float]]:
    """Methods by weighted score, best first; ties go to the more accurate, then the smaller, then by name."""
    parts, loss = metric_scores(results), losses(results)
    by_name = {r.method: r for r in results}
    totals = {m: sum(weights[k] * v for k, v in p.items()) for m, p in parts.items()}
    order = sorted(totals, key=lambda m: (-round(totals[m], 9), loss[m], by_name[m].size_bytes, m))
    return [(m, totals[m]) for m in order]


def fits(results: list[TrialResult]) -> dict[str, set[str]]:
    """Every archetype each method qualifies for. A: the highest compression (>80 % smaller than bf16 where
    reached, else near the best reached); B: low compression (< 55 % smaller) and near the fastest decode here
    with small loss, or the fastest itself whatever its size; C: neither. A method can be both A and B (on
    llama.cpp the smallest file is often the fastest too). Sizes are exact, speeds are not: a method whose B rests
    within the decode noise measured in this run (decode_noise) is B and C both, so noise never decides a label.
    An unquantized baseline (no smaller than bf16) is C by the numbers and never A or B."""
    quantized = [r for r in results if r.size_reduction_pct > 0]
    out = {r.method: {"C"} for r in results if r not in quantized}
    if not quantized:
        return out
    best_size = min(r.size_bytes for r in quantized)
    small_loss = [r for r in quantized if r.loss_pct <= SMALL_LOSS_PPL_PCT] or quantized
    fastest = max(small_loss, key=lambda r: (r.decode_tok_s, r.method))
    for r in quantized:
        labels = set()
        if r.size_reduction_pct >= A_REDUCTION_PCT or r.size_bytes <= best_size * (1 + NEAR_BEST):
            labels.add("A")
        sure, maybe = _latency_fit(r, small_loss, fastest)
        if maybe:
            labels.add("B")
        if not labels or (maybe and not sure and "A" not in labels):
            labels.add("C")
        out[r.method] = labels
    return out


def _latency_fit(r: TrialResult, small_loss: list[TrialResult], fastest: TrialResult) -> tuple[bool, bool]:
    """Whether `r` is Tool B for sure, and whether it may be within the run's decode noise: the fastest with small
    loss, or near it (10 %) with low compression."""
    if r not in small_loss:
        return False, False
    low = r.size_reduction_pct < LOW_COMPRESSION_PCT
    top, top_noise, noise = fastest.decode_tok_s, decode_noise(fastest), decode_noise(r)
    near_sure = r.decode_tok_s - noise >= (top + top_noise) * (1 - NEAR_BEST)
    if r is fastest:
        rivals = [o.decode_tok_s + decode_noise(o) for o in small_loss if o is not r]
        alone = not rivals or r.decode_tok_s - noise > max(rivals)
        return alone or (low and near_sure), True
    near_maybe = r.decode_tok_s + noise >= (top - top_noise) * (1 - NEAR_BEST)
    may_be_fastest = r.decode_tok_s + noise >= top - top_noise
    return low and near_sure, may_be_fastest or (low and near_maybe)


def team(weights: dict[str, float]) -> str | None:
    """The archetype the priorities ask for: A, B, C, or None for an accuracy-bound team."""
    top = max(weights.values())
    leaders = [k for k, v in weights.items() if v == top]
    if top < STRONG_BIAS or len(leaders) > 1:
        return "C"
    return {"storage": "A", "latency": "B", "accuracy": None}[leaders[0]]


def choose(candidates: list[TrialResult], weights: dict[str, float], fit: dict[str, set[str]]) -> str:
    """The best-ranked method in the archetype the weights ask for, among those no candidate beats on size,
    speed and loss at once (a dominated method is never the answer); the best overall if there is none."""
    ranking = [m for m, _ in rank(candidates, weights)]
    wanted = team(weights)
    front = set(pareto_front(candidates))
    skip = baselines(candidates)
    return next((m for m in ranking if m in front and m not in skip and (wanted is None or wanted in fit[m])),
                next(m for m in ranking if m not in skip))


def baselines(candidates: list[TrialResult]) -> set[str]:
    """Methods no smaller than bf16 (fp32, bf16): what the quantized ones are compared with, never a pick."""
    return {r.method for r in candidates if r.size_reduction_pct <= 0}


def loss_kind(r: TrialResult, results: list[TrialResult]) -> str:
    """What `losses` weighs for `r` among `results`: KL where every result has one, else a perplexity rise or a
    benchmark-average drop — two measures that no comparison may call better or worse than each other."""
    if all(o.kl_mean is not None for o in results):
        return "KL"
    return "perplexity rise" if r.ppl_delta_pct is not None else "benchmark drop"


def pareto_front(results: list[TrialResult]) -> list[str]:
    """Methods no other method beats on size, decode speed and accuracy loss (losses) at once; a loss of another
    kind (a perplexity rise beside a benchmark drop) beats nothing and is beaten by nothing."""
    loss = losses(results)
    kind = {r.method: loss_kind(r, results) for r in results}

    def dominates(a: TrialResult, b: TrialResult) -> bool:
        if kind[a.method] != kind[b.method]:
            return False
        la, lb = loss[a.method], loss[b.method]
        no_worse = a.size_bytes <= b.size_bytes and a.decode_tok_s >= b.decode_tok_s and la <= lb
        better = a.size_bytes < b.size_bytes or a.decode_tok_s > b.decode_tok_s or la < lb
        return no_worse and better

    return [r.method for r in results if not any(dominates(o, r) for o in results if o is not r)]


def _flip(candidates: list[TrialResult], priorities: Priorities, winner: str, fit: dict[str, set[str]]) -> str:
    """The smallest single change of one weight that changes the winner."""
    base = {"storage": priorities.storage, "latency": priorities.latency, "accuracy": priorities.accuracy}
    for factor in FLIP_FACTORS:
        for key in ("storage", "latency", "accuracy"):
            raised = dict(base, **{key: max(base[key], 0.1) * factor})
            total = sum(raised.values())
            top = choose(candidates, {k: v / total for k, v in raised.items()}, fit)
            if top != winner:
                return f"raising {key} from {base[key]:g} to {raised[key]:g} would pick {top} instead"
    return "no single weight raised up to 10× changes the choice: it wins on these numbers"


def _speed_line(r: TrialResult, by_name: dict[str, TrialResult]) -> str:
    if r.decode_kind == "bound":  # a GPU target not here: an upper limit, no measurement, no spread
        line = f"decodes at most {f.num(r.decode_tok_s, 1)} tok/s"
    elif r.decode_kind == "estimate":  # too big for RAM: read from disk, a formula, no spread
        line = f"decodes about {f.num(r.decode_tok_s, 2)} tok/s (estimate)"
    else:
        shown = f.pm(r.decode_tok_s, r.decode_tok_s_spread or 0.0)
        value, _, half = shown.partition(" ±")
        line = f"decodes {value} tok/s (±{half})" if half else f"decodes {shown}: its range is wider than the figure"
    if r.prefill_tok_s is not None:
        line += f" and prefills {f.num(r.prefill_tok_s, 0)} tok/s"
    line += f" on {r.device}"
    if "fp32" in by_name:
        line += f", {r.decode_tok_s / by_name['fp32'].decode_tok_s:.2f}× fp32"
    return line


def _reasons(r: TrialResult, by_name: dict[str, TrialResult], parts: dict[str, float], weights: dict[str, float],
             total: float, limits: Limits) -> list[str]:
    reasons = [
        f"{f.size(r.size_bytes)} on disk, {r.compression_ratio:.2f}× smaller than bf16 ({f.size_change(r.size_reduction_pct)})",
        _speed_line(r, by_name),
        *[f"measured so: {note}" for note in r.notes],  # what a deployment here must know to see these speeds
        _accuracy_line(r),
        "score {:.2f} = ".format(total) + " + ".join(
            f"{k} {weights[k]:.2f}×{parts[k]:.2f}" for k in ("storage", "latency", "accuracy")),
    ]
    set_limits = [k for k, v in limits.model_dump().items() if v is not None]
    if limits.max_ppl_rise_pct is not None and r.ppl_delta_pct is None:  # the evidence is a benchmark score
        set_limits[set_limits.index("max_ppl_rise_pct")] += " against its benchmark-average drop, no perplexity known"
    reasons.append("meets every limit (" + ", ".join(set_limits) + ")" if set_limits else "no hard limits were set")
    return reasons


def _accuracy_line(r: TrialResult) -> str:
    if r.accuracy_basis == "published":
        parts = ([f"perplexity {r.ppl_delta_pct:+.1f}% vs fp16"] if r.ppl_delta_pct is not None else
                 [f"benchmark average {r.score_delta_pct:+.1f}% vs bf16"])
        parts += [f"KL {f.sci(r.kl_mean)} nats/token"] if r.kl_mean is not None else []
        return f"published at this size: {', '.join(parts)} (the figure and its source are under the table)"
    line = f"perplexity {r.ppl_delta_pct:+.1f}% vs fp32, KL {f.sci(r.kl_mean)} nats/token, top-1 agreement " \
           f"{100 * r.top1_agreement:.1f}%"
    return line + (" — the proxy's, not known at this size" if r.accuracy_basis == "proxy" else "")


def advise(results: list[TrialResult], priorities: Priorities, where: str = "measured here",
           unfit: dict[str, str] | None = None) -> Recommendation:
    """Same results and priorities → the same recommendation. `where` says whose numbers these are; `unfit`: methods
    the deployment cannot hold (method → why), ruled out as a limit would."""
    measured = [r for r in results if r.status == "ok" and (r.kl_mean is not None or r.accuracy_basis == "published")]
    limits = priorities.limits
    ruled_out = {r.method: violations(r, limits) + ([unfit[r.method]] if r.method in (unfit or {}) else [])
                 for r in measured}
    ruled_out = {m: v for m, v in ruled_out.items() if v}
    candidates = [r for r in measured if r.method not in ruled_out]
    fit = fits(candidates)
    base = baselines(candidates)
    if len(base) == len(candidates):
        return _no_pick(results, measured, candidates, ruled_out, priorities)
    by_name = {r.method: r for r in measured}
    labels = {m: min(k) for m, k in fit.items()}  # one label each: A before B before C
    weights = priorities.weights()
    ranking = rank(candidates, weights)
    parts, totals = metric_scores(candidates), dict(ranking)
    winner, wanted = choose(candidates, weights, fit), team(weights)
    label = wanted if wanted in fit[winner] else labels[winner]
    front = set(pareto_front(candidates))
    beaten = [m for m, labels_of in fit.items() if wanted in labels_of and m not in base and m not in front]
    reasons = [_team_line(wanted, label, where, _exists(wanted, measured), beaten)]
    reasons += _reasons(by_name[winner], by_name, parts[winner], weights, totals[winner], limits)
    runner_up = next((m for m, _ in ranking if m != winner and m not in base), None)
    reasons.append(_runner_up_line(runner_up, winner, totals, fit))
    reasons += [line for line in (_within_noise(candidates, weights, fit, winner), _busy_line(candidates),
                                  _mixed_evidence_line(candidates)) if line]
    if len(candidates) - len(base) == 1:
        against = f"with the {', '.join(sorted(base))} baseline alone" if base else "with nothing else"
        reasons.append(f"only one quantized method ({winner}) to judge: its archetype and score compare it {against}; "
                       "measure more methods to choose between them")
    return Recommendation(
        archetype=label, method=winner, reasons=reasons, runner_up=runner_up,
        scores={m: MethodScore(total=t, archetype=labels[m], **parts[m]) for m, t in ranking},
        archetypes=labels, fits={m: sorted(k) for m, k in fit.items()}, pareto_front=pareto_front(measured),
        team=wanted, baselines=sorted(base), flip=_flip(candidates, priorities, winner, fit) if runner_up else "",
        ruled_out=ruled_out, priorities=priorities, device=by_name[winner].device,
    )


def _no_pick(results, measured, candidates, ruled_out, priorities: Priorities) -> Recommendation:
    """No quantized method to recommend: none measured, none within the limits, or baselines alone."""
    front = pareto_front(measured)
    if candidates:
        names = ", ".join(r.method for r in candidates)
        return Recommendation(reasons=[f"only unquantized baselines ({names}) meet the limits: no quantized method to "
                                       "recommend; measure at least one (two, to choose between them)"],
                              ruled_out=ruled_out, pareto_front=front, priorities=priorities,
                              archetypes={r.method: "C" for r in candidates}, fits={r.method: ["C"] for r in candidates},
                              baselines=sorted(r.method for r in candidates))
    if not measured:
        ok = [r for r in results if r.status == "ok"]
        unscored = (ok[0].reason or "").removeprefix("accuracy n/a: ").split(";")[0] if ok else ""
        why = (f"accuracy was not scored ({unscored or 'nothing to compare with'}), so there is nothing to weigh"
               if ok else "no method was measured successfully")
        return Recommendation(reasons=[why], ruled_out=ruled_out, pareto_front=front)
    closest = min(measured, key=lambda r: (_miss(r, priorities.limits), r.method))
    return Recommendation(
        reasons=["no measured method meets every hard limit",
                 f"closest: {closest.method}, which misses by: " + "; ".join(ruled_out[closest.method])],
        ruled_out=ruled_out, closest=closest.method, pareto_front=front, priorities=priorities,
    )


def _runner_up_line(runner_up: str | None, winner: str, totals: dict[str, float], fit: dict[str, set[str]]) -> str:
    if runner_up is None:
        return "no other quantized method meets the limits, so there is no runner-up"
    line = f"runner-up {runner_up} (Tool {label_of(fit[runner_up])}) scores {totals[runner_up]:.2f}"
    if totals[runner_up] > totals[winner]:
        teams = " or ".join(TEAMS[k] for k in sorted(fit[runner_up]))
        line += f", more than the pick on these weights: it is the pick for a {teams} team"
    return line


def _busy_line(candidates: list[TrialResult]) -> str:
    busy, slow = busy_labels(candidates), slow_labels(candidates)
    if not (busy or slow):
        return ""
    parts = ([f"while other processes took the CPU: {', '.join(busy)}"] if busy else []) + (
        [f"while the machine ran slow: {', '.join(slow)}"] if slow else [])
    return (f"timed {'; '.join(parts)}; those speeds may be low by that much or more, and the pick may differ on a "
            "quiet machine")


def _mixed_evidence_line(candidates: list[TrialResult]) -> str:
    """Where losses ranks perplexity rises beside benchmark drops, which are not one measure."""
    scores = sorted(r.method for r in candidates if r.ppl_delta_pct is None and r.score_delta_pct is not None)
    ppl = sorted(r.method for r in candidates if r.ppl_delta_pct is not None)
    if all(r.kl_mean is not None for r in candidates) or not (scores and ppl):
        return ""
    return (f"two kinds of accuracy loss that cannot be compared: the perplexity rise of {', '.join(ppl)} and the "
            f"benchmark-average drop of {', '.join(scores)}; no method is said to beat another across them, and the "
            "score ranks each group's % lost on one scale (a rough ranking between the groups)")


def _exists(wanted: str | None, measured: list[TrialResult]) -> bool:
    """Whether any method measured here, the ruled-out ones included, is of the archetype the team asks for."""
    base = baselines(measured)
    return wanted is None or any(wanted in k for m, k in fits(measured).items() if m not in base)


def _within_noise(candidates: list[TrialResult], weights: dict[str, float], fit: dict[str, set[str]],
                  winner: str) -> str:
    """Whether the decode noise measured in this run could swap the pick with its nearest rival: each decode moved by
    twice its coefficient of variation over the repeats (or half its spread, in exports from before the CV)."""
    wanted, base = team(weights), baselines(candidates)
    rival = next((m for m, _ in rank(candidates, weights)
                  if m != winner and m not in base and (wanted is None or wanted in fit[m])), None)
    if rival is None:
        return ""

    def nudged(r: TrialResult) -> TrialResult:
        sign = -1 if r.method == winner else 1 if r.method == rival else 0
        return r.model_copy(update={"decode_tok_s": max(r.decode_tok_s + sign * decode_noise(r), 1e-9)})

    if choose([nudged(r) for r in candidates], weights, fit) != rival:
        return ""
    cvs = [r.decode_cv for r in candidates if r.method in (winner, rival) and r.decode_cv is not None]
    within = (f"within twice the decode CV measured in this run ({' and '.join(f'{100 * cv:.1f} %' for cv in cvs)})"
              if len(cvs) == 2 else "within the decode spread measured in this run")
    if any(marked(r) or drifted(r) for r in candidates if r.method in (winner, rival)):
        within = ("within what a busy CPU, a slow machine or the spread between this machine's runs may have moved "
                  "their speeds")
    return (f"too close to call: {within}, {rival} would score higher; both are sound picks, and a run with more "
            "repeats (--repeats) can separate them")


def decode_noise(r: TrialResult) -> float:
    """How far a decode figure may move from noise alone: 2 × CV × decode, else half the spread over the repeats;
    timed while others took a share c of the CPU, up to decode × c / (1 - c) more (what it lost to them)."""
    noise = 2 * r.decode_cv * r.decode_tok_s if r.decode_cv is not None else (r.decode_tok_s_spread or 0) / 2
    if contended(r):
        noise += r.decode_tok_s * r.cpu_contention / (1 - min(r.cpu_contention, 0.95))
    if ran_slow(r):  # the machine ran this many times slower: up to that much more
        noise += r.decode_tok_s * (r.pace_ratio - 1)
    if drifted(r):  # as far as it moved from this machine's earlier runs of it
        noise += r.decode_tok_s * abs(drift(r))
    return noise



def _team_line(wanted: str | None, label: str, where: str, exists: bool = True, beaten: list[str] = ()) -> str:
    if wanted is None:
        return "accuracy-bound priorities: the best fit whatever its archetype"
    if label != wanted and beaten:
        return (f"{TEAMS[wanted]} priorities ask for Tool {wanted}, but each Tool {wanted} method {where} within the "
                f"limits ({', '.join(beaten)}) is beaten on size, speed and loss at once by another: the best-scoring "
                "one instead")
    if label != wanted and not exists:
        return (f"{TEAMS[wanted]} priorities ask for Tool {wanted}, but no method {where} is Tool {wanted}: the "
                "best-scoring one instead")
    if label != wanted:
        return f"{TEAMS[wanted]} priorities ask for Tool {wanted}, but no Tool {wanted} method meets the limits {where}"
    return (f"{TEAMS[wanted]} priorities → Tool {wanted}: the best-scoring Tool {wanted} method {where} that no "
            "other beats on size, speed and loss at once")
