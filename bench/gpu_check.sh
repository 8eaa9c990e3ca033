#!/usr/bin/env bash
# The GPU checks in one unattended command: the VRAM validation (bench/vram_validate.py and the CPU
# check's grid on cuda), a 1-GPU QLoRA probe of a real-width model built from its config, the DDP/ZeRO
# smoke (bench/scaling_smoke.py), a GGUF export and the mixed-adapter evaluation throughput
# (bench/eval_throughput.py), within 12 minutes in total. Results go to
# build/gpu-check/ (summary.md, one log per step, the reports named in docs/vram-accuracy.md).
#
#   bench/gpu_check.sh [--out DIR] [--python PY] [--budget-s S] [--dry-run]
#
# Exit codes: 0 every step ran (summary.md says how each ended), 1 a step failed, 2 bad arguments,
# 3 no CUDA device (nothing is run).
set -uo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/build/gpu-check"
PY=""
BUDGET_S=720
DRY_RUN=0

while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { echo "gpu_check: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || { echo "gpu_check: --python needs an interpreter" >&2; exit 2; }; PY="$2"; shift 2 ;;
        --budget-s)
            [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || { echo "gpu_check: --budget-s needs a positive whole number of seconds" >&2; exit 2; }
            BUDGET_S="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3 || true)"; fi
fi
[ -n "$PY" ] && [ -x "$(command -v "$PY" 2>/dev/null || echo "$PY")" ] || { echo "gpu_check: no python interpreter ('$PY'); pass --python" >&2; exit 2; }

# Each step: name, share of the budget (seconds at the default 720 s), command.
STEPS=(vram-validate vram-grid-cuda qlora-probe scaling-smoke gguf-export eval-throughput)
declare -A SHARE=([vram-validate]=170 [vram-grid-cuda]=120 [qlora-probe]=120 [scaling-smoke]=170 [gguf-export]=110 [eval-throughput]=30)

step_cmd() {
    case "$1" in
        vram-validate) echo "$PY bench/vram_validate.py --budget-s $(( $2 * 6 / 10 )) --out $OUT/vram-validate.md --json $OUT/vram-validate.json" ;;
        vram-grid-cuda) echo "$PY bench/vram_cpu_check.py --device cuda --out $OUT/vram-grid-cuda.md --json $OUT/vram-grid-cuda.json" ;;
        qlora-probe) echo "$PY -m dpo_tui estimate --model $OUT/qwen2.5-7b/config.json --method qlora --batch-size 2 --max-length 1024 --probe" ;;
        scaling-smoke) echo "$PY bench/scaling_smoke.py --steps 10 --out $OUT/scaling.md --json $OUT/scaling.json" ;;
        eval-throughput) echo "$PY bench/eval_throughput.py --device cuda" ;;
        gguf-export) echo "$PY -m dpo_tui train --runs-dir $OUT/runs --model sample_data/tiny-chat --dataset sample --name gpu-check-gguf --method lora --max-steps 2 --follow && $PY -m dpo_tui export --runs-dir $OUT/runs gpu-check-gguf --gguf $OUT/model.gguf" ;;
    esac
}

if [ "$DRY_RUN" = 1 ]; then
    echo "gpu_check (dry run): results would go to $OUT; python $PY; budget ${BUDGET_S}s"
    for s in "${STEPS[@]}"; do
        echo "  $s (up to $(( SHARE[$s] * BUDGET_S / 720 ))s): $(step_cmd "$s" $(( SHARE[$s] * BUDGET_S / 720 )))"
    done
    exit 0
fi

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False in $PY): nothing was run" >&2
    exit 3
fi

mkdir -p "$OUT" || { echo "gpu_check: cannot create $OUT" >&2; exit 2; }
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# a real-width Qwen2.5-7B config (weights are random: the probe builds them on the GPU)
mkdir -p "$OUT/qwen2.5-7b"
cat > "$OUT/qwen2.5-7b/config.json" <<'JSON'
{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584, "intermediate_size": 18944,
 "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
 "tie_word_embeddings": false, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
 "torch_dtype": "bfloat16"}
JSON

SUMMARY="$OUT/summary.md"
{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    "$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"Device: {p.name}, {p.total_memory / 2**30:.1f} GiB; torch {torch.__version__}")'
    echo
    echo "| step | result | seconds | log |"
    echo "|---|---|---:|---|"
} > "$SUMMARY"

failed=0
start=$SECONDS
for s in "${STEPS[@]}"; do
    left=$(( BUDGET_S - (SECONDS - start) ))
    limit=$(( SHARE[$s] * BUDGET_S / 720 ))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        echo "| $s | skipped (time budget spent) | 0 | - |" >> "$SUMMARY"
        continue
    fi
    echo "gpu_check: $s (up to ${limit}s)"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" bash -c "$(step_cmd "$s" "$limit")" > "$OUT/$s.log" 2>&1
    rc=$?
    case $rc in
        0) result="ok" ;;
        124|137) result="timed out after ${limit}s"; failed=1 ;;
        *) result="failed (exit $rc): $(tail -n 1 "$OUT/$s.log" | tr '|' '/')"; failed=1 ;;
    esac
    echo "| $s | $result | $(( SECONDS - t0 )) | $s.log |" >> "$SUMMARY"
    echo "gpu_check: $s: $result"
done
echo >> "$SUMMARY"
echo "Total $(( SECONDS - start )) s of a ${BUDGET_S} s budget." >> "$SUMMARY"
echo "gpu_check: summary in $SUMMARY"
exit $failed
