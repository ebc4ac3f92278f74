#!/usr/bin/env bash
# ETTh1 benchmark, mode S (OT only), look-back L = 336, horizon H = 96:
# train through SQL, score every one of the 2785 test windows, and write the
# results into the "ETTh1" section of docs/BENCHMARKS.md.
#
# It runs test/ett/etth1.sql (the protocol is described there) with a larger
# training budget than the test (lower learning rate, more patience), in a
# throwaway pg_virtualenv cluster. Training stops after at most max_seconds
# (600); early stopping ended it after about 1 minute on 2 cores.
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$(pwd)

csv=${TST_ETTH1_CSV:-../shared/data/ett/ETTh1.csv}
database=tst_ett_bench
options='{
	"patch_len": 16, "patch_stride": 8,
	"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
	"dropout": 0.2, "weight_decay": 0.05, "epochs": 60, "patience": 8,
	"batch_size": 64, "learning_rate": 0.0001, "max_seconds": 600, "seed": 1
}'

# Called back by pg_virtualenv below: run the SQL, with its output in $2.
if [ "${1:-}" = "--in-cluster" ]; then
	createdb "$database"
	psql -X -d "$database" -v ON_ERROR_STOP=1 \
		-v model=etth1_bench -v origin_stride=1 -v max_mse_ratio=1 -v options="$options" \
		-f test/ett/etth1.sql <"$csv" 2>&1 | tee "$2"
	exit "${PIPESTATUS[0]}"
fi

if [ ! -r "$csv" ]; then
	echo "bench: $csv not found: the ETTh1 data set is expected in ../shared/data/ett/ beside the repository, or set TST_ETTH1_CSV" >&2
	exit 1
fi

bash test/deps.sh
make -j"$(nproc)"
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(pg_config --pkglibdir)" ]; then
	echo "bench: make install writes to $(pg_config --pkglibdir), which needs root." >&2
	echo "bench: run 'sudo make install', then 'make bench' again as root, or run it as root." >&2
	exit 1
fi
make install

mkdir -p log
log="$repo_root/log/bench-etth1.log"
start=$SECONDS
pg_virtualenv -t -v 15 bash "$repo_root/bench/etth1.sh" --in-cluster "$log"
elapsed=$((SECONDS - start))

# Read "metric NAME VALUE" lines from the log.
metric() {
	local value
	value=$(sed -nE "s/^metric $1 ([-0-9.e]+)$/\\1/p" "$log" | tail -n 1)
	if [ -z "$value" ]; then
		echo "bench: metric $1 missing from $log" >&2
		exit 1
	fi
	echo "$value"
}

windows=$(metric windows)
model_mse=$(metric model_mse)
model_mae=$(metric model_mae)
repeat_last_mse=$(metric repeat_last_mse)
repeat_last_mae=$(metric repeat_last_mae)
mse_ratio=$(metric mse_ratio)
train_seconds=$(metric train_seconds)
score_seconds=$(metric score_seconds)
epochs_run=$(metric epochs_run)
best_epoch=$(metric best_epoch)
mode_m_mse=$(metric repeat_last_mode_m_mse)
mode_m_mae=$(metric repeat_last_mode_m_mae)
if [ "$windows" -ne 2785 ]; then
	echo "bench: scored $windows windows, expected all 2785" >&2
	exit 1
fi
# The model may lose to repeat-last, which is a result to record, but a failed
# harness, split or completeness check makes the numbers meaningless.
harness_failures=$(grep '^not ok - ' "$log" | grep -v -e '^not ok - model MSE' -e '^not ok - model MAE' || true)
if [ -n "$harness_failures" ]; then
	echo "bench: a check of etth1.sql failed, so docs/BENCHMARKS.md is not updated (log: $log):" >&2
	echo "$harness_failures" >&2
	exit 1
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
memory_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit with uncommitted changes"
fi
compact_options=$(tr -s ' \t\n' ' ' <<<"$options" | sed 's/^ //; s/ $//')

section=$(cat <<EOF
<!-- etth1:begin (written by bench/etth1.sh; do not edit by hand) -->
## ETTh1, mode S, L = 336, H = 96

Oil temperature (OT) only, standard split (train rows 0 to 8639, validation
8640 to 11519, test origins 11520 to 14304), OT standardized with the train
rows' mean and population standard deviation, MSE and MAE on standardized
values. Every one of the $windows test windows is scored.

| forecast | MSE | MAE |
| --- | --- | --- |
| tst | $model_mse | $model_mae |
| repeat-last value | $repeat_last_mse | $repeat_last_mae |

- MSE ratio tst / repeat-last: $mse_ratio
- Training: $train_seconds s in tst.train, $epochs_run epochs with early
  stopping, weights of epoch $best_epoch kept
- Scoring the $windows windows with tst.forecast_agg: $score_seconds s
- Model options: \`$compact_options\`
- Harness check, repeat-last in mode M over all windows: MSE $mode_m_mse,
  MAE $mode_m_mae (expected 1.294 and 0.713)
- Command: \`make bench\` (bench/etth1.sh), $elapsed s in all, on commit $commit
- Machine: $(nproc) cores, $cpu, $memory_gib GiB memory, PostgreSQL $(pg_config --version | sed 's/^PostgreSQL //')
- Date: $(date -u +%Y-%m-%d)
<!-- etth1:end -->
EOF
)

doc=docs/BENCHMARKS.md
if [ ! -f "$doc" ]; then
	printf '# Benchmarks\n\nMeasured numbers, each section written by the script it names.\n' >"$doc"
fi
if grep -q '^<!-- etth1:begin' "$doc"; then
	SECTION="$section" awk '
		/^<!-- etth1:begin/ { print ENVIRON["SECTION"]; skip = 1; next }
		/^<!-- etth1:end/ { skip = 0; next }
		!skip { print }' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
else
	printf '\n%s\n' "$section" >>"$doc"
fi
echo "bench: wrote the ETTh1 section of $doc ($elapsed s)"
