#!/usr/bin/env bash
# One GPU-machine pass for tuning the Triton backend: its GPU tests in 4 parallel shards (Triton compiles
# are CPU-bound), then the stage-shape harness (python -m bench.tuning.triton) alone on the GPU. Logs
# under $OUT.    bash bench/tuning/triton_gpu_pass.sh   (BENCH_ARGS="--cross-blocks" etc.)
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
OUT=${OUT:-/tmp/triton_out}; mkdir -p "$OUT"
TEST_S=${TEST_S:-110}; BENCH_S=${BENCH_S:-100}; BENCH_ARGS=${BENCH_ARGS:---sweep}
nvidia-smi -L
python -c "import torch, triton; print(torch.__version__, triton.__version__)"
python -m pytest -q --collect-only tests/test_triton.py -p no:cacheprovider -k "${TEST_K:-not nothing}" | grep '::' > "$OUT/ids.txt"
split -n r/4 "$OUT/ids.txt" "$OUT/shard_"
for s in "$OUT"/shard_*; do
  timeout "$TEST_S" python -m pytest -q -rs -p no:cacheprovider $(cat "$s") > "$s.log" 2>&1 &
done
wait
for s in "$OUT"/shard_*.log; do tail -n 3 "$s"; done
grep -h -E "^(FAILED|ERROR|SKIPPED)|Error|assert" "$OUT"/shard_*.log | head -40
timeout "$BENCH_S" python -m bench.tuning.triton $BENCH_ARGS --out "$OUT" 2>&1 | tee "$OUT/bench.log" | tail -n 20
