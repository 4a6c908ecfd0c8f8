#!/usr/bin/env bash
# Proves dgcn's GPU path on a machine with an NVIDIA GPU and PyPI's PyTorch in its python3 but no
# cargo (the machine this project borrows now and then: one H200, torch 2.11.0+cu130, no network).
#
#   here:   scripts/gpu-check.sh --prepare [MAX_MB]
#             builds the lean dgcn (--no-default-features: libtorch only) and the model's unit
#             tests with `cuda-tests`, strips both, and packs TFEID + CK+48 + as much of FER+
#             train as fits, into target/gpu/ (about MAX_MB MiB in all with the repository;
#             default 60). Afterwards the full app is built again.
#   here:   scripts/gpu-check.sh --build
#             only builds and strips the two binaries into target/gpu/ (scripts/gpu-train.sh uses it).
#   there:  scripts/gpu-check.sh OUT_DIR
#             (target/gpu/ sent along) checks the libraries, runs `dgcn doctor`, the model tests
#             on CUDA, GCNet's forward at batch 1, 8 and 64 on the CPU and the GPU, the training
#             throughput bench and a short training run on the pack, and writes what it measured
#             to OUT_DIR (summary.md and one file per step). Exits non-zero, saying why, where
#             there is no GPU or a library is missing.
#   rehearsal here: GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 PYTHON=.venv/bin/python \
#             scripts/gpu-check.sh OUT_DIR   runs every step on the CPU with 50 faces per class.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=target/gpu

log() { printf '[gpu-check] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Builds the lean dgcn and the model's unit tests with `cuda-tests`, stripped, into $GPU_DIR
# (`--build`: that alone, as scripts/gpu-train.sh --prepare uses it).
build_binaries() {
  mkdir -p "$GPU_DIR"
  log "building the lean dgcn (--no-default-features)"
  cargo build --release --no-default-features
  strip -o "$GPU_DIR/dgcn" target/release/dgcn
  log "building the model tests with cuda-tests"
  tests=$(cargo test --release --no-default-features --features cuda-tests --lib --no-run \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])' | tail -n 1)
  [ -n "$tests" ] || die "no test executable built"
  strip -o "$GPU_DIR/dgcn-model-tests" "$tests"
}

if [ "${1:-}" = "--build" ]; then
  build_binaries
  exit 0
fi

if [ "${1:-}" = "--prepare" ]; then
  max_mb=${2:-60}
  build_binaries
  tree_mb=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
  bins=$(du -cb "$GPU_DIR/dgcn" "$GPU_DIR/dgcn-model-tests" | tail -n 1 | cut -f1)
  pack_mb=$(python3 -c "print(max(8, $max_mb - ($tree_mb + $bins) / 1048576))")
  log "packing TFEID + CK+48 + FER+ into ${pack_mb} MiB"
  "$GPU_DIR/dgcn" data pack --datasets tfeid,ckplus48,ferplus --max-mb "$pack_mb" --out "$GPU_DIR/train.pack"
  log "building the full app again"
  cargo build --release
  du -ch "$GPU_DIR"/* | sed 's/^/[gpu-check] /' >&2
  exit 0
fi

OUT=${1:?usage: scripts/gpu-check.sh OUT_DIR  (or --prepare here)}
mkdir -p "$OUT"
summary="$OUT/summary.md"
{
  echo "# dgcn GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(uname -m), $(nproc) CPU cores"
} >"$summary"

DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=()
[ -n "${GPU_CHECK_QUICK:-}" ] && QUICK=(--max-per-class 50)
if [ "$DEVICE" = cuda ]; then
  command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver on this machine"
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1) ||
    die "nvidia-smi sees no GPU"
  [ -n "$gpu" ] || die "nvidia-smi sees no GPU"
  echo "- GPU: $gpu" >>"$summary"
else
  echo "- rehearsal on $DEVICE (GPU_CHECK_DEVICE), not a GPU measurement" >>"$summary"
fi

for f in "$GPU_DIR/dgcn" "$GPU_DIR/dgcn-model-tests" "$GPU_DIR/train.pack"; do
  [ -f "$f" ] || die "$f missing: run 'scripts/gpu-check.sh --prepare' where cargo is, and send $GPU_DIR along"
done

PY=${PYTHON:-python3}
# Found without importing torch (a CPU-only set-up installs it without its Python dependencies).
torch_lib=$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("torch"); print(os.path.join(os.path.dirname(s.origin), "lib"))' 2>/dev/null) ||
  die "$PY has no PyTorch: dgcn needs its libtorch (pip install torch==2.11.0)"
torch_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')
echo "- libtorch: $torch_version ($torch_lib)" >>"$summary"
case "$torch_version" in
  2.11.*) ;;
  *) log "warning: dgcn is built against libtorch 2.11 (tch 0.24); this is $torch_version" ;;
esac
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

missing=$(ldd "$GPU_DIR/dgcn" | grep "not found" || true)
[ -z "$missing" ] || die "libraries not found for dgcn: $missing"
if [ "$DEVICE" = cuda ]; then
  missing=$(ldd "$torch_lib/libtorch_cuda.so" | grep "not found" || true)
  [ -z "$missing" ] || die "libraries not found for libtorch_cuda: $missing"
fi
echo "- every library of dgcn (and on a GPU, of libtorch_cuda) resolves" >>"$summary"

step() {
  local name=$1
  shift
  log "$name: $*"
  local t0=$SECONDS
  if "$@" >"$OUT/$name.txt" 2>&1; then
    echo "- $name: ok ($((SECONDS - t0)) s) — $OUT/$name.txt" >>"$summary"
  else
    echo "- $name: FAILED ($((SECONDS - t0)) s) — $OUT/$name.txt" >>"$summary"
    tail -n 20 "$OUT/$name.txt" >&2
    failed=1
  fi
}
failed=0
dgcn="$GPU_DIR/dgcn"
step doctor "$dgcn" doctor --device "$DEVICE"
grep -q "model device: $DEVICE" "$OUT/doctor.txt" || { failed=1; log "doctor does not put the model on $DEVICE"; }
if [ "$DEVICE" = cuda ]; then
  step model-tests "$GPU_DIR/dgcn-model-tests" model:: --test-threads 1
else
  step model-tests "$GPU_DIR/dgcn-model-tests" model:: --test-threads 1 --skip cuda
fi
step bench-model "$dgcn" bench --model --device "$DEVICE" --out "$OUT/bench-model.md"
step bench-train "$dgcn" bench --train --device "$DEVICE" --pack "$GPU_DIR/train.pack" "${QUICK[@]}" \
  --out "$OUT/bench-train.md"
step train "$dgcn" train --device "$DEVICE" --pack "$GPU_DIR/train.pack" "${QUICK[@]}" --datasets tfeid,ckplus48,ferplus \
  --width 0.5 --no-reconstruction --gen-epochs 2 --epochs 3 --run "$OUT/train-run" \
  --weights "$OUT/train-run/gcnet.safetensors"
{
  echo
  [ -f "$OUT/bench-model.md" ] && cat "$OUT/bench-model.md"
  echo
  [ -f "$OUT/bench-train.md" ] && cat "$OUT/bench-train.md"
  echo
  if [ -f "$OUT/train-run/metrics.csv" ]; then
    echo "Short training on the pack (metrics.csv):"
    echo
    echo '```'
    cut -d, -f1,2,3,9,10,13 "$OUT/train-run/metrics.csv"
    echo '```'
  fi
} >>"$summary"
cat "$summary"
[ "$failed" = 0 ] || die "some steps failed (see $summary)"
log "all steps passed"
