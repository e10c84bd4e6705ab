#!/usr/bin/env bash
# The GPU paths, checked on a machine with an NVIDIA GPU in one go (≤ 8 minutes): install what they need, run
# `qadvisor doctor --device cuda`, then `--auto --device cuda` with the GPU methods on the bundled model and on
# synthetic:Qwen2.5-1.5B, and write one JSON: $OUT/gpu_check.json (OUT defaults to ./gpu-check).
#
#   bash benchmarks/gpu_check.sh                 # online: pip installs the extras
#   bash benchmarks/gpu_check.sh                 # offline: wheels put in .whl/ beforehand are installed first
#
# Each step has its own time limit and the script goes on after a failed one: the JSON says what each step did.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export QADVISOR_CACHE="$OUT/cache" PYTHONUNBUFFERED=1
METHODS=${GPU_METHODS:-fp32,bnb-int8,bnb-nf4,hqq-int4,quanto-int8,quanto-int4,torchao-int8,torchao-int4,gptq-int4}
steps=()

step() {  # step NAME LIMIT_S COMMAND...: run it, its output in $OUT/NAME.log, its exit code and seconds recorded
  local name=$1 limit=$2 start=$(date +%s)
  shift 2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local code=$?
  steps+=("{\"step\": \"$name\", \"exit\": $code, \"seconds\": $(( $(date +%s) - start ))}")
  echo "$name: exit $code in $(( $(date +%s) - start )) s"
}

if compgen -G ".whl/*.whl" >/dev/null; then  # no network there: wheels carried in
  step install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/qadvisor-site .whl/*.whl
  export PYTHONPATH="/tmp/qadvisor-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  step install 240 "$PY" -m pip install -q -e ".[bnb,hqq,quanto,torchao,gptq]"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
step hardware 60 "$PY" -m qadvisor hardware --json
cp "$OUT/hardware.log" "$OUT/hardware.json"
step doctor 120 "$PY" -m qadvisor doctor --device cuda
step bundled 150 "$PY" -m qadvisor --auto --device cuda --methods "$METHODS" --export "$OUT/bundled.json"
step qwen15b 150 "$PY" -m qadvisor --auto --device cuda --model synthetic:Qwen2.5-1.5B --methods "$METHODS" \
  --export "$OUT/qwen15b.json"

"$PY" - "$OUT" "${steps[@]}" <<'PY'
import json, sys
from pathlib import Path

out, steps = Path(sys.argv[1]), [json.loads(s) for s in sys.argv[2:]]
def read(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
doctor = read("cache/probes/doctor.json")
runs = {n: read(f"{n}.json") for n in ("bundled", "qwen15b")}
summary = {"steps": steps, "hardware": read("hardware.json"), "doctor": doctor,
           "results": {n: [{k: r.get(k) for k in ("method", "status", "reason", "device", "decode_tok_s",
                                                   "prefill_tok_s", "size_bytes", "ppl_delta_pct", "kl_mean",
                                                   "safe_config", "cpu_contention")}
                           for r in (run or {}).get("results", [])] for n, run in runs.items()}}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print(f"wrote {out / 'gpu_check.json'}")
PY
