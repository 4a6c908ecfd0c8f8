#!/usr/bin/env bash
# Call 3 after scripts/gpu-train.sh's two calls (same warm machine): a fresh contrastive encoder and
# classifier (the shipped generator held) trained from scratch, with and without the teachers'
# targets. Usage there: scripts/gpu-distill-fresh.sh OUT (on a fresh machine: `gpu-train.sh check`
# first, then this call carrying target/gpu/b, which joins the pack as `train` would).
set -uo pipefail
cd "$(dirname "$0")/.."
S=${GPU_STATE:-/root/dgcn-gpu}; OUT=$1; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export LD_LIBRARY_PATH="$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("torch"); print(os.path.join(os.path.dirname(s.origin), "lib"))')"
if [ ! -f "$S/full.pack" ]; then
  cat "$S/full.part-a" target/gpu/b/full.part-b >"$S/full.pack" || { echo "no pack parts: run gpu-train.sh check first"; exit 3; }
fi
EP=${GPU_TRAIN_EPOCHS:-16}; LIMIT=${GPU_JOB_SECONDS:-330}
QUICK=(); [ -n "${GPU_TRAIN_QUICK:-}" ] && QUICK=(--max-per-class 15)
fresh=(--device "${GPU_TRAIN_DEVICE:-cuda}" --threads 4 --pack "$S/full.pack" "${QUICK[@]}" --datasets tfeid,ckplus48,ferplus
  --generator-from weights/gcnet.safetensors --reference-mouth 40 --width 0.5 --encoder-width 1 --encoder-convs 2
  --gen-epochs 0 --repeat tfeid=2,ckplus48=2 --no-reconstruction --holdout-subjects 0 --ema 0.998 --keep-best
  --dropout 0 --no-degrade --epochs "$EP" --lr 1e-3 --mixup 0.2 --seed 81)
run() { local n=$1; shift; timeout "$LIMIT" "$S/dgcn" train "${fresh[@]}" "$@" --run "$S/$n" --weights "$S/$n/gcnet.safetensors" >"$S/$n.log" 2>&1; echo "- $n: rc $?" >>"$OUT/summary.md"; }
t=(--teacher-predictions "$S/teacher.csv")
run f5 "${t[@]}" --teacher-share 0.5 & run f10 "${t[@]}" --teacher-share 1.0 & run fctl & wait
for n in f5 f10 fctl; do
  { echo "$n:"; cut -d, -f1,2,9,10,11 "$S/$n/metrics.csv"; } >>"$OUT/summary.md" 2>&1
  w="$S/$n/gcnet.safetensors"; [ -f "$w" ] || w="$S/$n/checkpoint.safetensors"; [ -f "$w" ] && cp "$w" "$OUT/$n.safetensors"
done
tar czf "$OUT/logs3.tar.gz" -C "$S" f5.log f10.log fctl.log f5/metrics.csv f10/metrics.csv fctl/metrics.csv \
  f5/gcnet.json f10/gcnet.json fctl/gcnet.json 2>/dev/null
cat "$OUT/summary.md"
