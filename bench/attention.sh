#!/usr/bin/env bash
# Forward time and peak memory of local, logsparse and
# dense attention at contexts of 512 to 32,768 steps with patch_len 1 (one
# token per step), one window, one thread, through engine_bench attention.
# Each cell is the median of REPS (default 5) forecasts after one untimed
# call, in its own process, so that the peak RSS is that cell's. Writes the
# "attention" section of docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

reps=${REPS:-5}
bench_build_engine
start=$SECONDS
load_start=$(bench_load)
table=$bench_dir/attention-table.md
{
	echo "| attention | context | forward | peak RSS | time / local time |"
	echo "| --- | --- | --- | --- | --- |"
} >"$table"
declare -A local_time
for kind in local logsparse dense; do
	for context in 512 2048 8192 32768; do
		out=$("$bench_dir/engine_bench" attention "$kind" "$context" "$reps" || true)
		if grep -q '^error' <<<"$out"; then
			echo "| $kind | $context | fails: $(sed -n 's/^error //p' <<<"$out") | | |" >>"$table"
			continue
		fi
		median=$(grep '^forecast' <<<"$out" | awk '{ print $2 }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		rss=$(sed -n 's/^peak_rss_kb //p' <<<"$out")
		[ "$kind" = local ] && local_time[$context]=$median
		ratio=$(awk -v a="$median" -v b="${local_time[$context]}" 'BEGIN { printf "%.1f", a / b }')
		printf '| %s | %s | %.2f ms | %.0f MiB | %s |\n' "$kind" "$context" \
			"$(awk -v t="$median" 'BEGIN { print t * 1000 }')" \
			"$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$ratio" >>"$table"
	done
done
elapsed=$((SECONDS - start))
load_end=$(bench_load)

section=$bench_dir/attention.md
cat >"$section" <<EOT
<!-- attention:begin (written by bench/attention.sh; do not edit by hand) -->
## Sparse against dense attention

One window, patch_len 1 (a token per step), d_model 32, 4 heads, 1 layer,
d_ff 64, local window 16, H = 1, seeded weights, one thread. Peak RSS is
the whole process's, including the model (the flatten head grows with the
context) and the windows.

$(cat "$table")

- Local attention keeps 16 keys per token, so its attention work grows as
  O(T W); logsparse adds about log2(T) keys per token, O(T log T); dense
  keeps every earlier token, O(T^2) in time and in the probabilities it
  stores for backward. Where dense exceeds the engine's 1 GiB allocation
  limit it returns an error, which SQL reports; the process does not crash.
- Command: \`bash bench/attention.sh\` (REPS=$reps), $elapsed s, on commit $(bench_commit)
- Machine: $(bench_machine); load averages $load_start at the start and $load_end at the end
- Date: $(date -u +%Y-%m-%d)
<!-- attention:end -->
EOT
bench_write_section attention "$section"
cat "$section"
