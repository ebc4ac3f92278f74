#!/usr/bin/env bash
# The engine against the PyTorch reference model
# (test/reference/tst_reference.py, Debian's python3-torch) on the same
# weights and windows: forward throughput at 1 and 2 threads, a training
# step, and GFLOP/s against the measured sgemm peak. Writes the "engine"
# section of docs/BENCHMARKS.md. ROUNDS (default 3) alternating runs per side.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

rounds=${ROUNDS:-3}
bench_build_engine
start=$SECONDS
load_start=$(bench_load)
body=$(/usr/bin/python3 bench/engine_run.py "$bench_dir/engine_bench" "$bench_dir" "$rounds")
elapsed=$((SECONDS - start))
load_end=$(bench_load)

section=$bench_dir/engine.md
cat >"$section" <<EOT
<!-- engine:begin (written by bench/engine.sh; do not edit by hand) -->
## Engine against PyTorch

Same weights and windows on both sides: L = 336, patch 16 / stride 8 (41
tokens), d_model 64, 4 heads, 3 layers, d_ff 128, local attention over 16
tokens, H = 96, 5 quantiles.

$body
- Command: \`bash bench/engine.sh\` (ROUNDS=$rounds), $elapsed s, on commit $(bench_commit)
- Machine: $(bench_machine); load averages $load_start at the start and $load_end at the end
- Date: $(date -u +%Y-%m-%d)
<!-- engine:end -->
EOT
bench_write_section engine "$section"
cat "$section"
