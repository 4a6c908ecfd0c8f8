#!/usr/bin/env bash
# Trains dgcn on a borrowed GPU machine: python3 with PyPI's torch 2.11 (CUDA), no cargo, and a
# working tree that travels in at most 64 MiB per call. The whole prepared training set (TFEID,
# CK+48, FER+ train and valid: 81 MiB as a pack) does not fit one call, so it travels in two parts,
# one per call, and the machine keeps the first part while it stays warm between the calls.
#
#   here:   scripts/gpu-train.sh --prepare
#             builds the lean dgcn and the model tests (gpu-check.sh --build), xz-compresses
#             both, packs TFEID + CK+48 + FER+ train/valid (`data pack --splits train,valid`) and
#             splits the pack into target/gpu/a (with the binaries and a small TFEID + CK+48 pack)
#             and target/gpu/b. Afterwards the full app is built again.
#   there, call 1 (carry target/gpu/a):  scripts/gpu-train.sh check OUT
#             unpacks to /root/dgcn-gpu, runs doctor, the model tests on CUDA and bench --model,
#             and a pilot: four 2-epoch trainings at once on the small pack, whose samples/s size
#             the second call's runs.
#   there, call 2 (carry target/gpu/b, at once, while the machine is warm):
#             scripts/gpu-train.sh train OUT
#             joins the pack, trains four networks at once for GPU_TRAIN_SECONDS (default 250):
#             the shipped weights trained on with three learning rates (new cosine cycles, best
#             epoch on FER+ Valid kept) and a FER+-only pretraining at the shipped layout; then
#             cross-validates CK+48 and TFEID and the cross-dataset rows from that pretraining
#             (as many folds as fit). Writes weights, logs and summary.md to OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=target/gpu
S=${GPU_STATE:-/root/dgcn-gpu}
log() { printf '[gpu-train] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

if [ "${1:-}" = "--prepare" ]; then
  set -e
  rm -rf "$GPU_DIR/a" "$GPU_DIR/b"
  mkdir -p "$GPU_DIR/a" "$GPU_DIR/b"
  scripts/gpu-check.sh --build
  xz -9 -T2 -c "$GPU_DIR/dgcn" >"$GPU_DIR/a/dgcn.xz"
  xz -9 -T2 -c "$GPU_DIR/dgcn-model-tests" >"$GPU_DIR/a/dgcn-model-tests.xz"
  "$GPU_DIR/dgcn" data pack --datasets tfeid,ckplus48 --splits train,valid --out "$GPU_DIR/a/small.pack"
  "$GPU_DIR/dgcn" data pack --datasets tfeid,ckplus48,ferplus --splits train,valid --out "$GPU_DIR/full.pack"
  tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
  used=$(du -cb "$GPU_DIR"/a/* | tail -n 1 | cut -f1)
  # Call 1 carries the tree, the binaries, the small pack and part a, within 63 MiB.
  room=$((63 * 1048576 - tree - used))
  head -c "$room" "$GPU_DIR/full.pack" >"$GPU_DIR/a/full.part-a"
  tail -c +$((room + 1)) "$GPU_DIR/full.pack" >"$GPU_DIR/b/full.part-b"
  [ $(($(stat -c %s "$GPU_DIR/b/full.part-b") + tree)) -le $((63 * 1048576)) ] || die "the pack needs more than two calls"
  sha256sum "$GPU_DIR/full.pack" | cut -d' ' -f1 >"$GPU_DIR/b/full.sha256"
  du -cb "$GPU_DIR"/a/* | tail -n 1 | awk -v t="$tree" '{printf "[gpu-train] call 1: %.1f MiB\n", ($1 + t) / 1048576}' >&2
  du -cb "$GPU_DIR"/b/* | tail -n 1 | awk -v t="$tree" '{printf "[gpu-train] call 2: %.1f MiB\n", ($1 + t) / 1048576}' >&2
  cargo build --release
  exit 0
fi

STAGE=${1:?usage: scripts/gpu-train.sh --prepare | check OUT | train OUT}
OUT=${2:?usage: scripts/gpu-train.sh check|train OUT}
mkdir -p "$OUT" "$S"
T0=$SECONDS
DEVICE=${GPU_TRAIN_DEVICE:-cuda}
PY=${PYTHON:-python3}
torch_lib=$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("torch"); print(os.path.join(os.path.dirname(s.origin), "lib"))') ||
  die "$PY has no PyTorch"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
dgcn="$S/dgcn"
summary="$OUT/summary.md"
# Rehearsal on the CPU: GPU_TRAIN_DEVICE=cpu GPU_TRAIN_QUICK=1 GPU_STATE=/tmp/gs PYTHON=.venv/bin/python.
QUICK=()
[ -n "${GPU_TRAIN_QUICK:-}" ] && QUICK=(--max-per-class 15)

# Epoch samples/s of a run's last epoch (metrics.csv's last column), or nothing.
rate_of() { [ -f "$1/metrics.csv" ] && tail -n 1 "$1/metrics.csv" | awk -F, 'NR == 1 && $NF + 0 > 0 {print $NF}'; }

if [ "$STAGE" = check ]; then
  for f in dgcn dgcn-model-tests; do
    xz -dc "$GPU_DIR/a/$f.xz" >"$S/$f" && chmod +x "$S/$f" || die "unpacking $f"
  done
  cp "$GPU_DIR/a/small.pack" "$GPU_DIR/a/full.part-a" "$S/" || die "keeping the first part"
  {
    echo "# dgcn on a GPU: check (call 1)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPU cores"
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
    echo "- libtorch: $("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))') ($torch_lib)"
  } >"$summary"
  "$dgcn" doctor --device "$DEVICE" >"$OUT/doctor.txt" 2>&1
  echo "- doctor: rc $? ($(grep -c . "$OUT/doctor.txt") lines)" >>"$summary"
  t=$SECONDS
  timeout 150 "$S/dgcn-model-tests" model:: --test-threads 4 >"$OUT/model-tests.txt" 2>&1
  echo "- model tests (cuda-tests): rc $? in $((SECONDS - t)) s: $(grep -E '^test result' "$OUT/model-tests.txt")" >>"$summary"
  t=$SECONDS
  timeout 90 "$dgcn" bench --model --device "$DEVICE" --out "$OUT/bench-model.md" >"$OUT/bench-model.txt" 2>&1
  echo "- bench --model: rc $? in $((SECONDS - t)) s" >>"$summary"
  # Pilot: four trainings at once, the second call's layout and step-2 flags, on the small pack.
  t=$SECONDS
  for i in 1 2 3 4; do
    timeout 120 "$dgcn" train --device "$DEVICE" --threads 4 --pack "$S/small.pack" "${QUICK[@]}" --datasets tfeid,ckplus48 \
      --generator-from weights/gcnet.safetensors --gen-epochs 0 --width 0.5 --encoder-width 1 --encoder-convs 2 \
      --no-reconstruction --epochs 2 --repeat tfeid=4,ckplus48=4 --holdout-subjects 3 --ema 0.998 \
      --dropout 0 --no-degrade --seed "$i" --run "$S/pilot$i" --weights "$S/pilot$i/gcnet.safetensors" \
      >"$S/pilot$i.log" 2>&1 &
  done
  wait
  rates=$(for i in 1 2 3 4; do rate_of "$S/pilot$i"; done | tr '\n' ' ')
  echo "- pilot, 4 trainings at once: $((SECONDS - t)) s, samples/s per training (2nd epoch): $rates" >>"$summary"
  echo "$rates" | awk '{m = 0; for (i = 1; i <= NF; i++) if (m == 0 || $i < m) m = $i; print m}' >"$S/rate"
  tail -n 5 "$S"/pilot1.log >"$OUT/pilot1-tail.txt" 2>&1
  cp "$S"/pilot1/metrics.csv "$OUT/pilot1-metrics.csv" 2>/dev/null
  echo "- call 1 took $((SECONDS - T0)) s" >>"$summary"
  cat "$summary"
  exit 0
fi

[ "$STAGE" = train ] || die "unknown stage $STAGE"
[ -x "$dgcn" ] && [ -f "$S/full.part-a" ] || { echo "MISSING: this machine has not run the check stage (fresh machine)"; exit 3; }
cat "$S/full.part-a" "$GPU_DIR/b/full.part-b" >"$S/full.pack"
[ "$(sha256sum "$S/full.pack" | cut -d' ' -f1)" = "$(cat "$GPU_DIR/b/full.sha256")" ] || die "the joined pack's SHA-256 differs"
rate=$(cat "$S/rate" 2>/dev/null)
rate=${rate:-1000}
TRAIN_S=${GPU_TRAIN_SECONDS:-250}
END_S=${GPU_TRAIN_END:-500}
# Step-2 epoch: ≈ 30.7 k training faces (FER+ train and the lab sets twice) plus 3.6 k validation.
epochs=$("$PY" -c "print(max(2, min(40, int(0.8 * $TRAIN_S * $rate / 34500))))")
{
  echo "# dgcn on a GPU: training (call 2)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); pilot samples/s per training $rate; $epochs epochs per run"
} >"$summary"
common=(--device "$DEVICE" --threads 4 --pack "$S/full.pack" "${QUICK[@]}" --no-reconstruction --holdout-subjects 0 --ema 0.998
  --keep-best --dropout 0 --no-degrade)
cont=(--datasets tfeid,ckplus48,ferplus --init weights/gcnet.safetensors --gen-epochs 0 --repeat tfeid=2,ckplus48=2)
run() {
  local name=$1
  shift
  timeout $((TRAIN_S + 90)) "$dgcn" train "${common[@]}" "$@" --run "$S/$name" --weights "$S/$name/gcnet.safetensors" \
    >"$S/$name.log" 2>&1
  echo "- $name: rc $?, $(grep -c . "$S/$name/metrics.csv" 2>/dev/null) lines of metrics" >>"$summary"
}
run lr1e-3 "${cont[@]}" --epochs "$epochs" --lr 1e-3 --seed 11 &
run lr5e-4 "${cont[@]}" --epochs "$epochs" --lr 5e-4 --seed 12 &
run lr2e-3 "${cont[@]}" --epochs "$epochs" --lr 2e-3 --seed 13 &
run pretrain --datasets ferplus --width 0.5 --encoder-width 1 --encoder-convs 2 --gen-epochs 0 --no-contrastive \
  --epochs "$epochs" --lr 1e-3 --seed 14 &
wait
echo "- training phase: $((SECONDS - T0)) s" >>"$summary"

# Cross-validation from the pretraining, as many folds as fit (each ≈ 2.1 k faces × 26 epochs).
if [ -f "$S/pretrain/gcnet.safetensors" ]; then
  left=$((END_S - (SECONDS - T0) - 25))
  folds=$("$PY" -c "print(max(0, min(10, int($left * $rate * 1.2 / 60000))))")
  folds=${GPU_TRAIN_FOLDS:-$folds}
  echo "- cross-validation: $left s left, $folds folds per dataset" >>"$summary"
  ft=(--device "$DEVICE" --threads 4 --pack "$S/full.pack" "${QUICK[@]}" --init "$S/pretrain/gcnet.safetensors" --gen-epochs 6
    --gen-lr 1e-3 --epochs 20 --lr 3e-4 --no-reconstruction --dropout 0 --no-degrade)
  if [ "$folds" -gt 0 ]; then
    timeout "$left" "$dgcn" eval "${ft[@]}" --datasets ckplus48 --only-folds "$folds" --out "$S/cv-ck" >"$S/cv-ck.log" 2>&1 &
    timeout "$left" "$dgcn" eval "${ft[@]}" --datasets tfeid --only-folds "$folds" --out "$S/cv-tfeid" >"$S/cv-tfeid.log" 2>&1 &
    timeout "$left" "$dgcn" eval "${ft[@]}" --datasets tfeid,ckplus48 --cross-dataset --out "$S/cross" >"$S/cross.log" 2>&1 &
    wait
  fi
fi
echo "- call 2 took $((SECONDS - T0)) s" >>"$summary"

# What comes back: at most 8 files. Each run's weights (final, else its last checkpoint) and one
# archive of the logs, metrics, sidecars and reports.
for name in lr1e-3 lr5e-4 lr2e-3 pretrain; do
  w="$S/$name/gcnet.safetensors"
  [ -f "$w" ] || w="$S/$name/checkpoint.safetensors"
  [ -f "$w" ] && cp "$w" "$OUT/$name.safetensors"
  [ -f "$S/$name/metrics.csv" ] && { echo; echo "$name:"; echo '```'; cut -d, -f1,2,9,10,11,12 "$S/$name/metrics.csv"; echo '```'; } >>"$summary"
done
for f in cv-ck cv-tfeid cross; do
  [ -f "$S/$f.log" ] && { echo; echo "$f:"; grep -E "fold done|accuracy" "$S/$f.log" | tail -n 12 | sed 's/\x1b\[[0-9;]*m//g'; } >>"$summary"
done
(cd "$S" && tar czf "$OUT/logs.tar.gz" --exclude='*.safetensors' --exclude='*.pack' --exclude='full.part-*' \
  --exclude='dgcn' --exclude='dgcn-model-tests' --exclude='*.png' .)
cat "$summary"
