#!/usr/bin/env bash
# GPU training throughput on a machine without TensorFlow (the lent NVIDIA H200 machine: its
# image has JAX with CUDA, PyTorch and torchvision, no Keras, no TensorFlow, no network).
#
# Here, once (downloads Keras and the two packages it needs that the image lacks into .whl/,
# which .git/info/exclude ignores):
#     bash benchmarks/gpu.sh fetch
# There (the device tool's run, with carry [".whl"]; one call, inside its 10 minutes):
#     bash benchmarks/gpu.sh quick     # ResNet-50 beside keras.applications ResNet50 and
#                                      # torchvision resnet50 eager and torch.compile,
#                                      # float32 and bf16, batch 256 (about 5 min)
#     bash benchmarks/gpu.sh all       # the same with our ResNet-18 and ResNet-152 too
#     bash benchmarks/gpu.sh all --backend torch     # any extra flags go to the script
# Output: the table on stdout and, when $OUT is set, $OUT/train_throughput_gpu.json and
# $OUT/train_throughput_gpu.log.
set -euo pipefail
cd "$(dirname "$0")/.."

KERAS=keras==3.15.1
WHEELS=(namex==0.1.0 optree==0.20.0)

if [[ "${1:-}" == "fetch" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "$KERAS" "${WHEELS[@]}"
    ls -l .whl
    exit 0
fi

phase="${1:-quick}"
shift || true
case "$phase" in
    quick) models=(resnet50 ka:ResNet50 tv:resnet50 tv:resnet50+compile) ;;
    all) models=(resnet18 resnet50 resnet152 ka:ResNet50 tv:resnet50 tv:resnet50+compile) ;;
    *) echo "usage: bash benchmarks/gpu.sh fetch|quick|all [benchmarks.train_throughput flags]" >&2; exit 2 ;;
esac

if ! python3 -c 'import keras' 2>/dev/null; then
    [[ -d .whl ]] || { echo "no Keras here and no .whl/: run 'bash benchmarks/gpu.sh fetch' first and carry .whl" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
# 9 minutes at most, so a 10-minute call still returns the log.
timeout 540 python3 -m benchmarks.train_throughput --device gpu --backend jax \
    --models "${models[@]}" --modes float32 bf16 --batch-size 256 --rounds 3 \
    --json "$out/train_throughput_gpu.json" "$@" 2>&1 | tee "$out/train_throughput_gpu.log"
