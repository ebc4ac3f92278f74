#!/usr/bin/env bash
# Run every benchmark (`make bench`). Each one updates its own section of
# docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/etth1.sh
bash bench/engine.sh
bash bench/attention.sh
bash bench/sql.sh
