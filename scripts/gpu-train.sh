#!/usr/bin/env bash
# Trains dgcn on a borrowed GPU machine: python3 with PyPI's torch 2.11 (CUDA), no cargo, and a
# working tree that travels in at most 64 MiB per call. The whole prepared training set (TFEID,
# CK+48, FER+ train and valid: 81 MiB as a pack) and the FER+ pretraining that the fine-tuned
# cross-validation starts from do not fit one call, so they travel in two parts, one per call,
# and the machine keeps the first part while it stays warm between the calls (30 s).
#
#   here:   scripts/gpu-train.sh --prepare [PRETRAIN]
#             builds the lean dgcn (gpu-check.sh --build), xz-compresses it and PRETRAIN (default
#             runs/gpu2/pretrain/gcnet.safetensors, with its sidecar), packs TFEID + CK+48 + FER+
#             train/valid (`data pack --splits train,valid`) and splits the pack into target/gpu/a
#             (with the binary and, for GPU_PLAN=cycles, the pretraining) and target/gpu/b. Afterwards the full app is
#             built again.
#   there, call 1 (carry target/gpu/a):  scripts/gpu-train.sh check OUT
#             unpacks to /root/dgcn-gpu and runs `dgcn doctor` (a few seconds).
#   there, call 2 (carry target/gpu/b, at once, while the machine is warm):
#             scripts/gpu-train.sh train OUT
#             joins the pack and runs six jobs at once (GPU_TRAIN_EPOCHS, GPU_CV_EPOCHS):
#             the shipped weights trained on with a new cosine cycle at 1e-3 three ways (as before,
#             with random erasing, with mixup; best epoch on FER+ Valid kept), and, from the FER+
#             pretraining, the fine-tuned cross-validation of CK+48 and TFEID and the cross-dataset
#             rows with FER+ train (≤ GPU_CV_FERPLUS per class) added to every fold's training.
#             Writes the three runs' weights, logs, reports and summary.md to OUT.
#             GPU_PLAN=distill (the default since session 19) runs six trainings instead, each a
#             cycle from the shipped weights against teacher targets: --prepare then also packs
#             GPU_TEACHER (a teacher_targets.csv, see `train --teacher-predictions`) into call 1.
#             GPU_PLAN=fresh trains three fresh contrastive encoders and classifiers (the shipped
#             generator held) from scratch, with and without the teacher targets (16 epochs,
#             330 s per job unless GPU_TRAIN_EPOCHS / GPU_JOB_SECONDS say otherwise).
#             GPU_PLAN=camera runs six full cycles from the shipped weights with mixup, five of them
#             with camera effects (`train --camera-effects`, probability and rate varied) and a
#             control without, then scores each kept epoch on FER+ Valid clean and degraded
#             (`eval --degrade camera`): the robustness step that 3-epoch CPU runs could not finish.
#             Only GPU_PLAN=cycles needs the FER+ pretraining; the others run without it.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=target/gpu
S=${GPU_STATE:-/root/dgcn-gpu}
log() { printf '[gpu-train] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

if [ "${1:-}" = "--prepare" ]; then
  set -e
  pretrain=${2:-runs/gpu2/pretrain/gcnet.safetensors}
  # Only the cycles plan cross-validates from the pretraining; the others leave it behind.
  with_pretrain=$([ "${GPU_PLAN:-distill}" = cycles ] && echo 1 || true)
  if [ -n "$with_pretrain" ]; then
    [ -f "$pretrain" ] && [ -f "${pretrain%.safetensors}.json" ] || die "no pretraining at $pretrain (with its sidecar)"
  fi
  rm -rf "$GPU_DIR/a" "$GPU_DIR/b"
  mkdir -p "$GPU_DIR/a" "$GPU_DIR/b"
  scripts/gpu-check.sh --build
  xz -9 -T2 -c "$GPU_DIR/dgcn" >"$GPU_DIR/a/dgcn.xz"
  if [ -n "$with_pretrain" ]; then
    xz -6 -T2 -c "$pretrain" >"$GPU_DIR/a/pretrain.safetensors.xz"
    cp "${pretrain%.safetensors}.json" "$GPU_DIR/a/pretrain.json"
  fi
  if [ -n "${GPU_TEACHER:-}" ]; then
    xz -9 -T2 -c "$GPU_TEACHER" >"$GPU_DIR/a/teacher.csv.xz" || die "no teacher targets at $GPU_TEACHER"
  fi
  "$GPU_DIR/dgcn" data pack --datasets tfeid,ckplus48,ferplus --splits train,valid --out "$GPU_DIR/full.pack"
  tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
  used=$(du -cb "$GPU_DIR"/a/* | tail -n 1 | cut -f1)
  # Call 1 carries the tree, the binary, the pretraining and part a, within 63.7 MiB.
  limit=$((637 * 1048576 / 10))
  room=$((limit - tree - used))
  head -c "$room" "$GPU_DIR/full.pack" >"$GPU_DIR/a/full.part-a"
  tail -c +$((room + 1)) "$GPU_DIR/full.pack" >"$GPU_DIR/b/full.part-b"
  [ $(($(stat -c %s "$GPU_DIR/b/full.part-b") + tree + 100)) -le "$limit" ] || die "the pack needs more than two calls"
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


if [ "$STAGE" = check ]; then
  xz -dc "$GPU_DIR/a/dgcn.xz" >"$S/dgcn" && chmod +x "$S/dgcn" || die "unpacking dgcn"
  if [ -f "$GPU_DIR/a/pretrain.safetensors.xz" ]; then
    xz -dc "$GPU_DIR/a/pretrain.safetensors.xz" >"$S/pretrain.safetensors" || die "unpacking the pretraining"
    cp "$GPU_DIR/a/pretrain.json" "$S/" || die "keeping the pretraining's sidecar"
  fi
  cp "$GPU_DIR/a/full.part-a" "$S/" || die "keeping the first part"
  if [ -f "$GPU_DIR/a/teacher.csv.xz" ]; then
    xz -dc "$GPU_DIR/a/teacher.csv.xz" >"$S/teacher.csv" || die "unpacking the teacher targets"
  fi
  {
    echo "# dgcn on a GPU: check (call 1)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPU cores"
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
    echo "- libtorch: $("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))') ($torch_lib)"
  } >"$summary"
  "$dgcn" doctor --device "$DEVICE" >"$OUT/doctor.txt" 2>&1
  echo "- doctor: rc $? ($(grep -c . "$OUT/doctor.txt") lines)" >>"$summary"
  echo "- call 1 took $((SECONDS - T0)) s" >>"$summary"
  cat "$summary"
  exit 0
fi

[ "$STAGE" = train ] || die "unknown stage $STAGE"
[ -x "$dgcn" ] && [ -f "$S/full.part-a" ] || { echo "MISSING: this machine has not run the check stage (fresh machine)"; exit 3; }
cat "$S/full.part-a" "$GPU_DIR/b/full.part-b" >"$S/full.pack"
[ "$(sha256sum "$S/full.pack" | cut -d' ' -f1)" = "$(cat "$GPU_DIR/b/full.sha256")" ] || die "the joined pack's SHA-256 differs"
PLAN=${GPU_PLAN:-distill}
case "$PLAN" in
  cycles | distill | camera) EPOCHS=${GPU_TRAIN_EPOCHS:-20} LIMIT=${GPU_JOB_SECONDS:-480} ;;
  fresh) EPOCHS=${GPU_TRAIN_EPOCHS:-16} LIMIT=${GPU_JOB_SECONDS:-330} ;;
  *) die "unknown GPU_PLAN $PLAN (cycles, distill, fresh or camera)" ;;
esac
CV_EPOCHS=${GPU_CV_EPOCHS:-10}
CV_FERPLUS=${GPU_CV_FERPLUS:-400}
{
  echo "# dgcn on a GPU: training (call 2)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $EPOCHS epochs per run; cross-validation 6+$CV_EPOCHS epochs per fold, FER+ train ≤ $CV_FERPLUS per class added"
} >"$summary"
# The shipped weights, a new cosine cycle at 1e-3 (the step that gained most on the last GPU), as
# before and with each of two augmentations; same seed.
cycle=(--device "$DEVICE" --threads 3 --pack "$S/full.pack" "${QUICK[@]}" --datasets tfeid,ckplus48,ferplus
  --init weights/gcnet.safetensors --gen-epochs 0 --repeat tfeid=2,ckplus48=2 --no-reconstruction --holdout-subjects 0
  --ema 0.998 --keep-best --dropout 0 --no-degrade --epochs "$EPOCHS" --seed 51)
# A run's weights: the final ones, else its last checkpoint (a run stopped by its time limit).
weights_of() {
  local w="$S/$1/gcnet.safetensors"
  [ -f "$w" ] || w="$S/$1/checkpoint.safetensors"
  echo "$w"
}
run() {
  local name=$1
  shift
  timeout "$LIMIT" "$dgcn" train "${cycle[@]}" "$@" --run "$S/$name" --weights "$S/$name/gcnet.safetensors" \
    >"$S/$name.log" 2>&1
  echo "- $name: rc $?, $(grep -c . "$S/$name/metrics.csv" 2>/dev/null) lines of metrics" >>"$summary"
}
# Fine-tuned cross-validation and cross-dataset rows from the FER+ pretraining, FER+ train added.
ft=(--device "$DEVICE" --threads 2 --pack "$S/full.pack" "${QUICK[@]}" --init "$S/pretrain.safetensors" --gen-epochs 6
  --gen-lr 1e-3 --epochs "$CV_EPOCHS" --lr 3e-4 --no-reconstruction --dropout 0 --no-degrade
  --add-datasets ferplus --add-per-class "$CV_FERPLUS")
cv() {
  local name=$1
  shift
  timeout "$LIMIT" "$dgcn" eval "${ft[@]}" "$@" --out "$S/$name" >"$S/$name.log" 2>&1
  echo "- $name: rc $?" >>"$summary"
}
if [ "$PLAN" = cycles ]; then
  names=(plain erase mixup)
  run plain --lr 1e-3 &
  run erase --lr 1e-3 --erase 0.5 &
  run mixup --lr 1e-3 --mixup 0.2 &
  cv cv-ck --datasets ckplus48 &
  cv cv-tfeid --datasets tfeid &
  cv cross --datasets tfeid,ckplus48 --cross-dataset &
elif [ "$PLAN" = camera ]; then
  # Camera robustness: the shipped step with mixup (as its last cycles), each query degraded
  # with probability P by a random mix of blur, noise, JPEG, a far face and exposure.
  names=(c25lr5 c25lr10 c25lr25 c50lr5 c10lr5 control)
  run c25lr5 --mixup 0.2 --lr 5e-4 --camera-effects 0.25 &
  run c25lr10 --mixup 0.2 --lr 1e-3 --camera-effects 0.25 &
  run c25lr25 --mixup 0.2 --lr 2.5e-4 --camera-effects 0.25 &
  run c50lr5 --mixup 0.2 --lr 5e-4 --camera-effects 0.5 &
  run c10lr5 --mixup 0.2 --lr 5e-4 --camera-effects 0.1 &
  run control --mixup 0.2 --lr 5e-4 &
else
  [ -f "$S/teacher.csv" ] || die "no teacher targets (prepare with GPU_TEACHER)"
  t=(--teacher-predictions "$S/teacher.csv")
fi
if [ "$PLAN" = fresh ]; then
  # A fresh contrastive encoder and classifier of the shipped layout against the shipped generator
  # (held), trained from scratch with the teachers' targets (share 0.5 and 1.0) and without.
  cycle=(--device "$DEVICE" --threads 4 --pack "$S/full.pack" "${QUICK[@]}" --datasets tfeid,ckplus48,ferplus
    --generator-from weights/gcnet.safetensors --reference-mouth 40 --width 0.5 --encoder-width 1 --encoder-convs 2
    --gen-epochs 0 --repeat tfeid=2,ckplus48=2 --no-reconstruction --holdout-subjects 0 --ema 0.998 --keep-best
    --dropout 0 --no-degrade --epochs "$EPOCHS" --lr 1e-3 --mixup 0.2 --seed 81)
  names=(f5 f10 fctl)
  run f5 "${t[@]}" --teacher-share 0.5 &
  run f10 "${t[@]}" --teacher-share 1.0 &
  run fctl &
elif [ "$PLAN" = distill ]; then
  # Distillation: the same cycle with the teachers' combined distribution blended into the FER+
  # training targets (share S), against a control without it; mixup as in the shipped cycles.
  names=(d5 d10 d5lr5 d5nomix d7lr25 control)
  run d5 "${t[@]}" --teacher-share 0.5 --mixup 0.2 --lr 1e-3 &
  run d10 "${t[@]}" --teacher-share 1.0 --mixup 0.2 --lr 1e-3 &
  run d5lr5 "${t[@]}" --teacher-share 0.5 --mixup 0.2 --lr 5e-4 &
  run d5nomix "${t[@]}" --teacher-share 0.5 --lr 1e-3 &
  run d7lr25 "${t[@]}" --teacher-share 0.7 --mixup 0.2 --lr 2.5e-4 &
  run control --mixup 0.2 --lr 5e-4 &
fi
wait
echo "- call 2 took $((SECONDS - T0)) s" >>"$summary"
if [ "$PLAN" = camera ]; then
  # Each run's kept epoch on FER+ Valid, clean and under the eleven camera degradations, four at once.
  for name in "${names[@]}"; do
    w=$(weights_of "$name")
    [ -f "$w" ] || continue
    timeout 120 "$dgcn" eval --device "$DEVICE" --threads 3 --pack "$S/full.pack" "${QUICK[@]}" --datasets ferplus \
      --split valid --weights "$w" --precision f32 --degrade camera --out "$S/$name-degrade" >"$S/$name-degrade.log" 2>&1 &
    while [ "$(jobs -rp | wc -l)" -ge 4 ]; do sleep 1; done
  done
  wait
  for name in "${names[@]}"; do
    r="$S/$name-degrade/report.md"
    [ -f "$r" ] && { echo; echo "$name, FER+ Valid clean and degraded:"; echo; sed -n '/faces degraded/,/mean of the/p' "$r"; } >>"$summary"
  done
  echo "- degraded evaluations done at $((SECONDS - T0)) s" >>"$summary"
fi

# What comes back: at most 8 files, 64 MiB together. The weights (final, else the last
# checkpoint) of the four runs with the best validation epoch, and one archive of every run's
# logs, metrics, sidecars and reports.
best() { awk -F, '$1 == 2 && $10 > b { b = $10 } END { print b + 0 }' "$S/$1/metrics.csv" 2>/dev/null || echo 0; }
keep=$(for name in "${names[@]}"; do echo "$(best "$name") $name"; done | sort -rn | head -n 4 | cut -d' ' -f2)
for name in "${names[@]}"; do
  w=$(weights_of "$name")
  if [ -f "$w" ] && grep -qx "$name" <<<"$keep"; then cp "$w" "$OUT/$name.safetensors"; fi
  [ -f "$S/$name/metrics.csv" ] && { echo; echo "$name:"; echo '```'; cut -d, -f1,2,9,10,11,12 "$S/$name/metrics.csv"; echo '```'; } >>"$summary"
done
[ "$PLAN" = cycles ] && for f in cv-ck cv-tfeid cross; do
  [ -f "$S/$f.log" ] && { echo; echo "$f:"; grep -E "fold done|accuracy" "$S/$f.log" | tail -n 14 | sed 's/\x1b\[[0-9;]*m//g'; } >>"$summary"
done
(cd "$S" && tar czf "$OUT/logs.tar.gz" --exclude='*.safetensors' --exclude='*.pack' --exclude='full.part-*' \
  --exclude='dgcn' --exclude='*.png' .)
cat "$summary"
