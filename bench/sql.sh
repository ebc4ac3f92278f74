#!/usr/bin/env bash
# Forecasts through SQL, in one throwaway
# pg_virtualenv cluster, every figure from the same run.
#
#   SQL path  SERIES series of ROWS rows (default 10,000 x 2,000), H = 24,
#             no parallel workers: (a) a GROUP BY avg, (b) forecast_table with
#             a tiny model, (c) with the engine benchmark's model, (d) the engine alone
#             (log/bench/engine_bench) on the same windows; the same for the
#             series_agg + LATERAL forecast form; peak backend memory.
#   history   one series of HISTORY rows (default 10 million) against one of
#             1,000: the time of tst.forecast on each.
#   parallel  forecast_agg and forecast_table with 0 and 2 parallel workers:
#             times, identical results, and the plan.
#   cache     the first tst.forecast call of a session (loads and validates
#             the model) against later calls.
#
# Each query runs in its own session, so that the peak memory (VmHWM of the
# backend, read from /proc/self/status) is that query's. The SQL path and
# parallel queries run in ROUNDS (default 3) alternating rounds, and each
# figure is the median of its rounds, with the peak memory of that round.
# Writes the "sql" section of docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)
. bench/lib.sh

series=${SERIES:-10000}
rows=${ROWS:-2000}
history=${HISTORY:-10000000}
rounds=${ROUNDS:-3}
out=$repo_root/$bench_dir/sql
database=tst_bench

# One session: SETTINGS then QUERY; prints "MILLISECONDS PEAK_KB". Queries
# consume their rows in an aggregate over a referenced column, since the
# planner drops unreferenced subquery columns and would skip the work.
timed() {
	local settings=$1 query=$2 log
	log=$(psql -X -q -d "$database" -v ON_ERROR_STOP=1 <<EOF
$settings
\timing on
$query;
\timing off
\t on
SELECT substring(pg_read_file('/proc/self/status') from 'VmHWM:\s+(\d+) kB');
EOF
	)
	echo "$(grep -E '^Time:' <<<"$log" | tail -n 1 | awk '{ print $2 }') $(tail -n 2 <<<"$log" | grep -E '^ *[0-9]+$' | tr -d ' ')"
}

# The md5 of a query's rows, to compare results.
digest() {
	psql -X -qAt -d "$database" -v ON_ERROR_STOP=1 <<EOF
$1
SELECT md5(string_agg(r::text, ',')) FROM ($2) AS r;
EOF
}

in_cluster() {
	local serial="SET max_parallel_workers_per_gather = 0;"
	local parallel="SET max_parallel_workers_per_gather = 2;"
	local partitionwise="SET enable_partitionwise_aggregate = on;"
	local tiny='{"context": 336, "patch_len": 16, "patch_stride": 8, "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "epochs": 1, "max_windows_per_epoch": 64, "seed": 1}'
	local big='{"context": 336, "patch_len": 16, "patch_stride": 8, "d_model": 64, "n_heads": 4, "n_layers": 3, "d_ff": 128, "window": 16, "epochs": 1, "max_windows_per_epoch": 64, "seed": 1}'
	createdb "$database"
	psql -X -q -d "$database" -v ON_ERROR_STOP=1 <<EOF
CREATE EXTENSION tst;
CREATE TABLE t (series text, ts timestamptz, value float8);
INSERT INTO t
SELECT 's' || lpad(s::text, 6, '0'), timestamptz '2020-01-01 00:00+00' + h * interval '1 hour',
       (s % 17) + sin((h + s) / 3.8) + 0.001 * ((h * 7 + s) % 101)
FROM generate_series(1, $series) AS s, generate_series(0, $rows - 1) AS h;
VACUUM ANALYZE t;
SELECT tst.train('tiny', 'SELECT * FROM t WHERE series <= ''s000020''', 'ts', 'value', 'series', 24, '$tiny');
SELECT tst.train('big', 'SELECT * FROM t WHERE series <= ''s000020''', 'ts', 'value', 'series', 24, '$big');
CREATE TABLE short_history AS
  SELECT tst.series_agg(timestamptz '2020-01-01 00:00+00' + h * interval '1 hour', sin(h / 3.8)) AS h
  FROM generate_series(0, 999) AS h;
CREATE TABLE tp (series text, ts timestamptz, value float8) PARTITION BY HASH (series);
SELECT format('CREATE TABLE tp_%s PARTITION OF tp FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i)
FROM generate_series(0, 7) AS i \gexec
INSERT INTO tp SELECT * FROM t;
VACUUM ANALYZE tp;
CREATE TABLE long_history AS
  SELECT tst.series_agg(timestamptz '2000-01-01 00:00+00' + h * interval '1 minute', sin(h / 3.8)) AS h
  FROM generate_series(0, $history - 1) AS h;
EOF

	# The engine alone: the same windows and weights, for engine_bench.
	mkdir -p "$out/engine"
	psql -X -qAt -d "$database" -v ON_ERROR_STOP=1 \
		-c "SELECT encode(weights, 'hex') FROM tst.models WHERE name = 'big'" | xxd -r -p >"$out/engine/weights.tstw"
	psql -X -qAt -d "$database" -v ON_ERROR_STOP=1 \
		-c "SELECT array_to_string(tst.series_window(h, 336), ' ') FROM (SELECT series, tst.series_agg(ts, value) AS h FROM t GROUP BY series) AS s ORDER BY series" \
		>"$out/engine/windows.txt"
	/usr/bin/python3 -c "
import numpy as np, sys
np.loadtxt(sys.argv[1], dtype='<f8').astype('<f8').tofile(sys.argv[2])" "$out/engine/windows.txt" "$out/engine/x.f64"
	cat >"$out/engine/config.txt" <<EOF
context 336
horizon 24
patch_len 16
patch_stride 8
d_model 64
n_heads 4
n_layers 3
d_ff 128
window 16
batch $series
attention local
dropout 0.1
quantiles 0.025 0.1 0.5 0.9 0.975
EOF

	local table="SELECT count(*) FROM tst.forecast_table('%s', 't', 'ts', 'value', 'series', 24)"
	local lateral="SELECT count(*) FROM (SELECT series, tst.series_agg(ts, value) AS h FROM t GROUP BY series) AS s, LATERAL tst.forecast('%s', s.h, 24) AS f"
	local agg="SELECT series, tst.forecast_agg('big', ts, value, 24) AS f FROM t GROUP BY series"
	local pagg="SELECT series, tst.forecast_agg('big', ts, value, 24) AS f FROM tp GROUP BY series"
	local ptable="SELECT count(*) FROM tst.forecast_table('big', 'tp', 'ts', 'value', 'series', 24)"
	local plateral="SELECT count(*) FROM (SELECT series, tst.series_agg(ts, value) AS h FROM tp GROUP BY series) AS s, LATERAL tst.forecast('big', s.h, 24) AS f"
	local round
	: >"$out/times-raw.txt"
	# The main figures alternate over ROUNDS rounds; each keeps the median.
	for round in $(seq "$rounds"); do
		{
			echo "a $(timed "$serial" "SELECT sum(a) FROM (SELECT series, avg(value) AS a FROM t GROUP BY series) AS s")"
			echo "b $(timed "$serial" "$(printf "$table" tiny)")"
			echo "c $(timed "$serial" "$(printf "$table" big)")"
			echo "d $("$repo_root/$bench_dir/engine_bench" forecast "$out/engine" 1 3 "$series" | grep '^forecast' | sort -k2 -n | sed -n 2p | awk '{ print $2 * 1000 }') 0"
			echo "lb $(timed "$serial" "$(printf "$lateral" tiny)")"
			echo "lc $(timed "$serial" "$(printf "$lateral" big)")"
			echo "agg0 $(timed "$serial" "SELECT sum(cardinality(f)) FROM ($agg) AS s")"
			echo "agg2 $(timed "$parallel" "SELECT sum(cardinality(f)) FROM ($agg) AS s")"
			echo "tab0 $(timed "$serial" "$(printf "$table" big)")"
			echo "tab2 $(timed "$parallel" "$(printf "$table" big)")"
			echo "pagg0 $(timed "$serial $partitionwise" "SELECT sum(cardinality(f)) FROM ($pagg) AS s")"
			echo "pagg2 $(timed "$parallel $partitionwise" "SELECT sum(cardinality(f)) FROM ($pagg) AS s")"
		} >>"$out/times-raw.txt"
	done
	{
		echo "short $(timed "SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));" "SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history))")"
		echo "long $(timed "SELECT count(*) FROM tst.forecast('big', (SELECT h FROM long_history));" "SELECT count(*) FROM tst.forecast('big', (SELECT h FROM long_history))")"
		echo "long_read $(timed "SELECT tst.series_length(h) FROM long_history;" "SELECT tst.series_length(h) FROM long_history")"
		echo "plat0 $(timed "$serial $partitionwise" "$plateral")"
		echo "plat2 $(timed "$parallel $partitionwise" "$plateral")"
		echo "ptab0 $(timed "$serial $partitionwise" "$ptable")"
		echo "ptab2 $(timed "$parallel $partitionwise" "$ptable")"
	} >>"$out/times-raw.txt"
	# Median time and peak memory per key (the lower middle for an even count).
	sort -k1,1 -k2,2n "$out/times-raw.txt" | awk '
		$1 != key { if (key != "") print key, t[int((n + 1) / 2)], m[int((n + 1) / 2)]; key = $1; n = 0 }
		{ n++; t[n] = $2; m[n] = $3 }
		END { print key, t[int((n + 1) / 2)], m[int((n + 1) / 2)] }' >"$out/times.txt"
	{
		digest "$serial" "SELECT series, tst.forecast_agg('big', ts, value, 24) FROM t GROUP BY series ORDER BY series"
		digest "$parallel" "SELECT series, tst.forecast_agg('big', ts, value, 24) FROM t GROUP BY series ORDER BY series"
		digest "$serial" "SELECT * FROM tst.forecast_table('big', 't', 'ts', 'value', 'series', 24)"
		digest "$parallel" "SELECT * FROM tst.forecast_table('big', 't', 'ts', 'value', 'series', 24)"
		digest "$serial" "SELECT series, tst.forecast_agg('big', ts, value, 24) FROM tp GROUP BY series ORDER BY series"
		digest "$parallel $partitionwise" "SELECT series, tst.forecast_agg('big', ts, value, 24) FROM tp GROUP BY series ORDER BY series"
		digest "$serial" "SELECT s.series, f.* FROM (SELECT series, tst.series_agg(ts, value) AS h FROM t GROUP BY series) AS s, LATERAL tst.forecast('big', s.h, 24) AS f ORDER BY 1, 2"
		digest "$parallel $partitionwise" "SELECT s.series, f.* FROM (SELECT series, tst.series_agg(ts, value) AS h FROM tp GROUP BY series) AS s, LATERAL tst.forecast('big', s.h, 24) AS f ORDER BY 1, 2"
		digest "$parallel $partitionwise" "SELECT * FROM tst.forecast_table('big', 'tp', 'ts', 'value', 'series', 24)"
	} >"$out/digests.txt"
	psql -X -qAt -d "$database" -c "$parallel" -c "EXPLAIN (COSTS OFF) SELECT series, tst.forecast_agg('big', ts, value, 24) FROM t GROUP BY series" >"$out/plan.txt"
	psql -X -qAt -d "$database" -c "$parallel" -c "$partitionwise" -c "EXPLAIN (COSTS OFF) SELECT series, tst.forecast_agg('big', ts, value, 24) FROM tp GROUP BY series" >"$out/plan-partitioned.txt"

	# Model cache: five calls in one new session.
	psql -X -q -d "$database" -v ON_ERROR_STOP=1 >"$out/cache.txt" <<EOF
\timing on
SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));
SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));
SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));
SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));
SELECT count(*) FROM tst.forecast('big', (SELECT h FROM short_history));
EOF
}

if [ "${1:-}" = "--in-cluster" ]; then
	in_cluster
	exit 0
fi

bench_build_engine
mkdir -p "$out"
start=$SECONDS
load_start=$(bench_load)
pg_virtualenv -t -v 15 -o max_worker_processes=8 -o max_parallel_workers=4 \
	bash "$repo_root/bench/sql.sh" --in-cluster
elapsed=$((SECONDS - start))
load_end=$(bench_load)

ms() { awk -v k="$1" '$1 == k { print $2 }' "$out/times.txt"; }
kb() { awk -v k="$1" '$1 == k { print $3 }' "$out/times.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
sec() { awk -v m="$1" 'BEGIN { if (m < 1000) printf "%.1f ms", m; else printf "%.2f s", m / 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
a=$(ms a) b=$(ms b) c=$(ms c) d=$(ms d) lb=$(ms lb) lc=$(ms lc)
mapfile -t digests <"$out/digests.txt"
same() { [ "$1" = "$2" ] && echo identical || echo DIFFERENT; }
cache_times=$(grep -E '^Time:' "$out/cache.txt" | awk '{ printf "%s%.1f ms", (NR > 1 ? ", " : ""), $2 }')

section=$out/section.md
cat >"$section" <<EOT
<!-- sql:begin (written by bench/sql.sh; do not edit by hand) -->
## Forecasts through SQL

A table of $series series x $rows hourly rows, H = 24. The tiny model has
1 layer and d_model 8; the big one is the engine benchmark's model (3 layers,
d_model 64, L = 336). All in one cluster. The SQL path queries and the
first three rows of the parallel table run in $rounds alternating rounds and
show the median; the others run once. Memory is the backend's peak resident set (VmHWM),
including the shared memory it touched.

### SQL path against the engine (no parallel workers)

| query | time | peak backend memory |
| --- | --- | --- |
| (a) \`SELECT series, avg(value) FROM t GROUP BY series\` | $(sec "$a") | $(mib "$(kb a)") |
| (b) \`forecast_table\`, tiny model | $(sec "$b") | $(mib "$(kb b)") |
| (c) \`forecast_table\`, big model | $(sec "$c") | $(mib "$(kb c)") |
| (d) engine alone, big model, the same $series windows | $(sec "$d") | |
| \`series_agg\` + LATERAL \`forecast\`, tiny model | $(sec "$lb") | $(mib "$(kb lb)") |
| \`series_agg\` + LATERAL \`forecast\`, big model | $(sec "$lc") | $(mib "$(kb lc)") |

- (b) / (a) = $(ratio "$b" "$a") (goal at most 1.5); LATERAL form: $(ratio "$lb" "$a").
- ((c) - (b)) / (d) = $(ratio "$(awk -v c="$c" -v b="$b" 'BEGIN { print c - b }')" "$d") (goal 0.9 to 1.1); LATERAL form: $(ratio "$(awk -v c="$lc" -v b="$lb" 'BEGIN { print c - b }')" "$d").

### History length

| history | \`tst.forecast\` call |
| --- | --- |
| 1,000 rows | $(sec "$(ms short)") |
| $history rows | $(sec "$(ms long)") |
| reading the $history-row value alone (\`series_length\`) | $(sec "$(ms long_read)") |

### Parallel workers

| query | 0 workers | 2 workers | speed-up | results |
| --- | --- | --- | --- | --- |
| \`forecast_agg\` GROUP BY series | $(sec "$(ms agg0)") | $(sec "$(ms agg2)") | $(ratio "$(ms agg0)" "$(ms agg2)")x | $(same "${digests[0]}" "${digests[1]}") |
| \`forecast_table\` | $(sec "$(ms tab0)") | $(sec "$(ms tab2)") | $(ratio "$(ms tab0)" "$(ms tab2)")x | $(same "${digests[2]}" "${digests[3]}") |
| \`forecast_agg\`, table in 8 hash partitions by series | $(sec "$(ms pagg0)") | $(sec "$(ms pagg2)") | $(ratio "$(ms pagg0)" "$(ms pagg2)")x | $(same "${digests[0]}" "${digests[5]}") |
| \`series_agg\` + LATERAL \`forecast\`, partitioned | $(sec "$(ms plat0)") | $(sec "$(ms plat2)") | $(ratio "$(ms plat0)" "$(ms plat2)")x | $(same "${digests[6]}" "${digests[7]}") |
| \`forecast_table\`, partitioned | $(sec "$(ms ptab0)") | $(sec "$(ms ptab2)") | $(ratio "$(ms ptab0)" "$(ms ptab2)")x | $(same "${digests[2]}" "${digests[8]}") |

Results are compared by the md5 of all rows, against the same query with
no workers on the plain table. The partitioned rows use
\`enable_partitionwise_aggregate = on\` with 2 workers.

Plan of the forecast_agg query with 2 workers on the plain table. The
workers scan and build partial states; the leader combines them and runs
every final function, so the model work stays in the leader.

\`\`\`
$(cat "$out/plan.txt")
\`\`\`

Plan on the partitioned table. Where it shows a HashAggregate under the
Parallel Append, each partition is aggregated whole by one process, final
function and model included; where it shows Partial HashAggregate with a
Finalize step above the Gather, the model runs in the leader again:

\`\`\`
$(grep -v -E 'Group Key|Seq Scan on tp_|^ *->  HashAggregate$' "$out/plan-partitioned.txt")
\`\`\`

### Model cache

Five \`tst.forecast\` calls with the big model in one new session: $cache_times.
The first loads and validates the model; the later ones find it in the cache.

- Command: \`bash bench/sql.sh\` (SERIES=$series ROWS=$rows HISTORY=$history ROUNDS=$rounds), $elapsed s, on commit $(bench_commit)
- Machine: $(bench_machine); load averages $load_start at the start and $load_end at the end
- Date: $(date -u +%Y-%m-%d)
<!-- sql:end -->
EOT
bench_write_section sql "$section"
cat "$section"
