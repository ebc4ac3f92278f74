#!/usr/bin/env bash
# Run every benchmark (`make bench`). Each one updates its own section of
# docs/BENCHMARKS.md.
#
# Usage: bench/run.sh [--quick]
#   --quick  check that the ETT harness runs (bench/ett/run.sh --quick: the
#            protocol check and a 2-epoch cell S96) and write nothing. The
#            full run trains 8 ETT cells of up to 15 minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--quick" ]; then
	bash bench/ett/run.sh --quick
	exit 0
fi
bash bench/etth1.sh
bash bench/ett/run.sh
