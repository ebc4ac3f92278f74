#!/usr/bin/env bash
# ETTh1 benchmark, modes S and M at horizons 96, 192, 336 and 720, through
# SQL alone: load the CSV with \copy, check the harness, then for each cell
# train with tst.train and score every test window with tst.evaluate.
#
# Usage: bench/ett/run.sh [--mode S|M] [--horizon 96|192|336|720] [--quick]
#                         [--options JSON]
#   --mode, --horizon  run only the cells of that mode or horizon (default: all 8)
#   --quick            train for at most 2 epochs and 60 s, run cell S96 unless
#                      --mode or --horizon says otherwise, and leave
#                      docs/BENCHMARKS.md unchanged: a check that the harness runs
#   --options JSON     merge JSON into the model options of every cell run, as
#                      an experiment: the logs get the results, and
#                      bench/ett/results.tsv and docs/BENCHMARKS.md stay unchanged
#
# Model options per cell come from bench/ett/cells.json. A full run records
# each cell it ran in bench/ett/results.tsv (one line per cell, replaced on a
# rerun) and rewrites the "ett" section of docs/BENCHMARKS.md from that file.
# The script fails, and records nothing, when the harness check (repeat-last
# in mode M at H = 96 scores MSE 1.294 and MAE 0.713) or a completeness check
# of a cell fails. Logs are kept in log/bench-ett/.
set -euo pipefail

cd "$(dirname "$0")/../.."
repo_root=$(pwd)

csv=${TST_ETTH1_CSV:-../shared/data/ett/ETTh1.csv}
database=tst_ett_bench
log_dir="$repo_root/log/bench-ett"
results=bench/ett/results.tsv
doc=docs/BENCHMARKS.md

# Called back by pg_virtualenv below: load, check, then run each cell given.
if [ "${1:-}" = "--in-cluster" ]; then
	overrides=$2
	shift 2
	dropdb --if-exists "$database"
	createdb "$database"
	psql -X -d "$database" -v ON_ERROR_STOP=1 -f bench/ett/load.sql <"$csv" 2>&1 | tee "$log_dir/load.log"
	psql -X -d "$database" -v ON_ERROR_STOP=1 -f bench/ett/check.sql 2>&1 | tee "$log_dir/check.log"
	if grep -q '^not ok - ' "$log_dir/check.log"; then
		echo "bench/ett: the harness check failed, so no cell is run" >&2
		exit 1
	fi
	for cell in "$@"; do
		mode=${cell:0:1}
		horizon=${cell:1}
		psql -X -d "$database" -v ON_ERROR_STOP=1 -v mode="$mode" -v horizon="$horizon" \
			-v cells="$(cat bench/ett/cells.json)" -v overrides="$overrides" \
			-f bench/ett/cell.sql 2>&1 | tee "$log_dir/$cell.log"
	done
	exit 0
fi

modes="S M"
horizons="96 192 336 720"
quick=0
experiment=''
while [ $# -gt 0 ]; do
	case $1 in
		--mode) modes=$2; shift 2 ;;
		--horizon) horizons=$2; shift 2 ;;
		--quick) quick=1; shift ;;
		--options) experiment=$2; shift 2 ;;
		*)
			echo "usage: bench/ett/run.sh [--mode S|M] [--horizon 96|192|336|720] [--quick] [--options JSON]" >&2
			exit 2
			;;
	esac
done
if [[ ! " S M " == *" $modes "* && "$modes" != "S M" ]] ||
	[[ ! " 96 192 336 720 " == *" $horizons "* && "$horizons" != "96 192 336 720" ]]; then
	echo "bench/ett: mode must be S or M and horizon one of 96, 192, 336, 720" >&2
	exit 2
fi
if [ "$quick" -eq 1 ] && [ "$modes" = "S M" ] && [ "$horizons" = "96 192 336 720" ]; then
	modes=S
	horizons=96
fi
cells=()
for mode in $modes; do
	for horizon in $horizons; do
		cells+=("$mode$horizon")
	done
done
overrides='{}'
if [ "$quick" -eq 1 ]; then
	overrides='{"epochs": 2, "max_seconds": 60}'
fi
if [ -n "$experiment" ]; then
	if ! overrides=$(/usr/bin/python3 -c 'import json, sys; o = json.loads(sys.argv[1]); assert isinstance(o, dict); print(json.dumps(o))' "$experiment" 2>/dev/null); then
		echo "bench/ett: --options must be a JSON object, such as '{\"context\": 512}'" >&2
		exit 2
	fi
fi

if [ ! -r "$csv" ]; then
	echo "bench/ett: $csv not found: the ETTh1 data set is expected in ../shared/data/ett/ beside the repository, or set TST_ETTH1_CSV" >&2
	exit 1
fi

bash test/deps.sh
make -j"$(nproc)"
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(pg_config --pkglibdir)" ]; then
	echo "bench/ett: make install writes to $(pg_config --pkglibdir), which needs root." >&2
	echo "bench/ett: run 'sudo make install', then this script again as root, or run it as root." >&2
	exit 1
fi
make install

rm -rf "$log_dir"
mkdir -p "$log_dir"
start=$SECONDS
pg_virtualenv -t -v 15 bash "$repo_root/bench/ett/run.sh" --in-cluster "$overrides" "${cells[@]}"
elapsed=$((SECONDS - start))

# Print the value of "metric NAME VALUE" in log $1.
metric() {
	local value
	value=$(sed -nE "s/^metric $2 ([-0-9.e]+)$/\\1/p" "$1" | tail -n 1)
	if [ -z "$value" ]; then
		echo "bench/ett: metric $2 missing from $1" >&2
		exit 1
	fi
	echo "$value"
}

check_mse=$(metric "$log_dir/check.log" check_mse)
check_mae=$(metric "$log_dir/check.log" check_mae)
echo "bench/ett: harness check, repeat-last mode M H 96: MSE $check_mse, MAE $check_mae (expected 1.294 and 0.713)"

failed=0
for cell in "${cells[@]}"; do
	if ! grep -q '^ok - every test window scored' "$log_dir/$cell.log" || grep -q '^not ok - ' "$log_dir/$cell.log"; then
		echo "bench/ett: cell $cell failed (log: $log_dir/$cell.log)" >&2
		grep '^not ok - ' "$log_dir/$cell.log" >&2 || true
		failed=1
	fi
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi

for cell in "${cells[@]}"; do
	log="$log_dir/$cell.log"
	echo "bench/ett: $cell: MSE $(metric "$log" model_mse), MAE $(metric "$log" model_mae)," \
		"repeat-last MSE $(metric "$log" repeat_last_mse), coverage 80% $(metric "$log" coverage_80)," \
		"95% $(metric "$log" coverage_95), training $(metric "$log" seconds) s"
done
if [ "$quick" -eq 1 ]; then
	echo "bench/ett: quick run, $doc not updated ($elapsed s)"
	exit 0
fi
if [ -n "$experiment" ]; then
	for cell in "${cells[@]}"; do
		echo "bench/ett: $cell: validation MSE $(metric "$log_dir/$cell.log" validation_mse)"
	done
	echo "bench/ett: experiment with options $overrides; $results and $doc not updated ($elapsed s)"
	exit 0
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
memory_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
machine="$(nproc) cores, $cpu, $memory_gib GiB"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit+changes"
fi
date=$(date -u +%Y-%m-%d)
command="bench/ett/run.sh"
if [ "${#cells[@]}" -ne 8 ]; then
	command="$command --mode '$modes' --horizon '$horizons'"
fi

# One line per cell in results.tsv; a rerun replaces the cell's line.
header="cell	mse	mae	repeat_last_mse	repeat_last_mae	seasonal_naive_mse	coverage_80	coverage_95	train_seconds	epochs_run	best_epoch	context	date	commit	machine	options	validation_mse"
[ -f "$results" ] || echo "$header" >"$results"
for cell in "${cells[@]}"; do
	log="$log_dir/$cell.log"
	options=$(sed -nE "s/^== Cell $cell : training [^ ]+ with (.*)$/\\1/p" "$log" | tail -n 1)
	line=$(printf '%s\t' "$cell" "$(metric "$log" model_mse)" "$(metric "$log" model_mae)" \
		"$(metric "$log" repeat_last_mse)" "$(metric "$log" repeat_last_mae)" \
		"$(metric "$log" seasonal_naive_mse)" "$(metric "$log" coverage_80)" "$(metric "$log" coverage_95)" \
		"$(metric "$log" seconds)" "$(metric "$log" epochs_run)" "$(metric "$log" best_epoch)" \
		"$(metric "$log" context)" "$date" "$commit" "$machine" "$options")$(metric "$log" validation_mse)
	grep -v "^$cell	" "$results" >"$results.tmp" || true
	echo "$line" >>"$results.tmp"
	mv "$results.tmp" "$results"
done

# The section of docs/BENCHMARKS.md, from every line of results.tsv.
section=$(awk -F'\t' -v check_mse="$check_mse" -v check_mae="$check_mae" \
	-v pg="$(pg_config --version | sed 's/^PostgreSQL //')" '
	BEGIN {
		anchor["S96"] = "0.053 / 0.055"; anchor["S192"] = "0.069 / 0.071"
		anchor["S336"] = "0.081 / 0.081"; anchor["S720"] = "0.080 / 0.087"
		anchor["M96"] = "0.370 / 0.375"; anchor["M192"] = "0.413 / 0.407"
		anchor["M336"] = "0.422 / 0.430"; anchor["M720"] = "0.447 / 0.427"
		best["S96"] = 0.053; best["S192"] = 0.069; best["S336"] = 0.081; best["S720"] = 0.080
		best["M96"] = 0.370; best["M192"] = 0.407; best["M336"] = 0.422; best["M720"] = 0.427
		n = split("S96 S192 S336 S720 M96 M192 M336 M720", order, " ")
	}
	NR > 1 { row[$1] = $0 }
	END {
		print "<!-- ett:begin (written by bench/ett/run.sh from bench/ett/results.tsv; do not edit by hand) -->"
		print "## ETTh1, modes S and M, every test window"
		print ""
		print "Standard split: train rows 0 to 8639, validation 8640 to 11519, test"
		print "11520 to 14399. tst.train reads rows 0 to 11519 with validation_fraction"
		print "0.25, so its validation targets are exactly rows 8640 to 11519. tst.evaluate"
		print "scores every test window (stride 1, 2881 - H windows per series) on values"
		print "standardized with the mean and population standard deviation of the train"
		print "rows. Mode S is OT only; mode M is the seven columns as seven series of one"
		print "model, with metrics pooled over the seven (equal counts, so the mean of the"
		print "seven). Published MSE: NLinear / PatchTST/42 (L = 336) in mode S,"
		print "PatchTST/64 (L = 512) / FITS in mode M. Coverage is the share of test"
		print "values inside the 80% and 95% intervals."
		print ""
		print "| cell | tst MSE | tst MAE | published MSE | below both | repeat-last MSE | repeat-last MAE | seasonal-naive MSE | 80% coverage | 95% coverage | training s | s per epoch | epochs (best) | L |"
		print "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
		for (i = 1; i <= n; i++) {
			c = order[i]
			if (!(c in row)) {
				printf "| %s | not run | | %s | | | | | | | | | | |\n", c, anchor[c]
				continue
			}
			split(row[c], f, "\t")
			printf "| %s | %.3f | %.3f | %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f | %.1f | %d (%d) | %d |\n",
				c, f[2], f[3], anchor[c], (f[2] < best[c] ? "yes" : "no"), f[4], f[5], f[6], f[7], f[8],
				f[9], (f[10] > 0 ? f[9] / f[10] : 0), f[10], f[11], f[12]
		}
		print ""
		printf "Harness check on the last run: repeat-last in mode M at H = 96 scored MSE %s\n", check_mse
		printf "and MAE %s (expected 1.294 and 0.713). PostgreSQL %s.\n", check_mae, pg
		print ""
		print "Validation MSE: the same scoring on the validation windows (rows 8640"
		print "to 11519), which is what options may be compared by."
		print ""
		print "| cell | validation MSE | date | commit | machine | model options |"
		print "| --- | --- | --- | --- | --- | --- |"
		for (i = 1; i <= n; i++) {
			c = order[i]
			if (!(c in row)) continue
			split(row[c], f, "\t")
			printf "| %s | %s | %s | %s | %s | `%s` |\n", c, (f[17] != "" ? sprintf("%.4f", f[17]) : "not scored"), f[13], f[14], f[15], f[16]
		}
		print ""
		print "Command: `make bench` runs every cell (bench/run.sh); one cell:"
		print "`bash bench/ett/run.sh --mode S --horizon 96`. Training is capped by"
		print "max_seconds in bench/ett/cells.json."
		print "<!-- ett:end -->"
	}' "$results")

if grep -q '^<!-- ett:begin' "$doc"; then
	SECTION="$section" awk '
		/^<!-- ett:begin/ { print ENVIRON["SECTION"]; skip = 1; next }
		/^<!-- ett:end/ { skip = 0; next }
		!skip { print }' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
else
	printf '\n%s\n' "$section" >>"$doc"
fi
echo "bench/ett: ran ${cells[*]} with $command in $elapsed s; wrote $results and the ett section of $doc"
