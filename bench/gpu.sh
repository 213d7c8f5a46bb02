#!/usr/bin/env bash
# GPU checks of the benchmark suite: the `gpu` tests, then `hepattn bench --device cuda` at TrackML pixel
# scale (tracker on 10k filtered hits, filter on 57k hits, the tracker from 10k to 60k hits), in bf16.
# Writes JSON and plots under $OUT (or the current folder). Meant to finish within 8 minutes on one
# H100/H200: every bench call gets a share of a 7-minute budget and skips the rows it cannot start in time.
# Without a CUDA device it says so, shows that the gpu tests are collected and skipped, and exits 0.
#   bash bench/gpu.sh            # or: OUT=/some/folder bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-.}"
mkdir -p "$out"

if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench/gpu.sh: no CUDA device is visible to torch; the CUDA parts (gpu tests, hepattn bench" \
        "--device cuda) are skipped"
    python -m pytest -q -p no:cacheprovider -m gpu tests/bench
    exit 0
fi

deadline=$(($(date +%s) + 420))
left() { echo $((deadline - $(date +%s))); }  # seconds of the budget still to spend
status=0
bench() { hepattn bench --device cuda --size full --precision bf16 "$@" || status=1; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
hepattn info

# 1. the gpu tests: flex mask attention vs dense, bf16, 64k-hit encoder memory, flex gradients (~2 min)
timeout 150 python -m pytest -q -p no:cacheprovider -m gpu tests || status=1

# 2. analytic FLOPs and bytes of one event, for the floor of the device
hepattn bench --device cuda --flops --size full --precision bf16 --hits 10000,57000 \
    --json "$out/bench_flops.json" || status=1

# 3. pixel scale: every kernel and part of the tracker at 10k hits, the filter at 57k hits
bench --hits 10000 --parts encoder,decoder,model,train,matcher --budget $(($(left) / 2)) \
    --json "$out/bench_cuda_tracker_10k.json"
bench --hits 57000 --parts filter --budget 30 --json "$out/bench_cuda_filter_57k.json"

# 4. scaling of the tracker with the hits (keeps about 2 minutes for step 5)
if (($(left) > 150)); then
    bench --hits 10000,20000,40000,60000 --kernels flex --parts encoder,decoder,model,train \
        --budget $(($(left) - 130)) --json "$out/bench_cuda_scaling.json" --plot "$out/bench_cuda_scaling.png"
fi

# 5. does torch.compile or CUDA graphs pay at batch size 1 (flex, forward passes; compiling takes a while)
if (($(left) > 60)); then
    bench --hits 10000 --kernels flex --parts model --compile off,on,graphs --budget $(($(left) - 40)) \
        --json "$out/bench_cuda_compile_10k.json"
fi
echo "bench/gpu.sh: done (status $status); JSON in $out"
exit $status
