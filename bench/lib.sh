# Helpers shared by the bench/*.sh scripts (sourced, not run).
#
#   bench_build_engine       build log/bench/engine_bench from bench/engine_bench.c
#                            and src/core with -O2, as PGXS builds the extension
#   bench_machine            one line: cores, CPU, memory, PostgreSQL version
#   bench_commit             the commit, noting uncommitted changes other
#                            than docs/BENCHMARKS.md
#   bench_load               the 1, 5 and 15 minute load averages, since
#                            other work on the machine skews the figures
#   bench_write_section NAME FILE
#                            replace the NAME section of docs/BENCHMARKS.md
#                            (between <!-- NAME:begin and <!-- NAME:end -->)
#                            with FILE, or append it

bench_dir=log/bench

bench_build_engine() {
	mkdir -p "$bench_dir"
	cc -std=c11 -O2 -fno-math-errno -Wall -Wextra -Werror -Isrc/core -o "$bench_dir/engine_bench" \
		bench/engine_bench.c src/core/*.c $(pkg-config --cflags --libs openblas) -lm
}

bench_machine() {
	local cpu memory_gib pg
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	memory_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
	pg=$(pg_config --version 2>/dev/null || echo "PostgreSQL not found")
	echo "$(nproc) cores, $cpu, $memory_gib GiB memory, $pg"
}

bench_commit() {
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	# docs/BENCHMARKS.md is the benchmarks' own output, so it does not count.
	if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md' 2>/dev/null)" ]; then
		commit="$commit with uncommitted changes"
	fi
	echo "$commit"
}

bench_load() {
	cut -d ' ' -f 1-3 /proc/loadavg
}

bench_write_section() {
	local name=$1 file=$2 doc=docs/BENCHMARKS.md
	if grep -q "^<!-- $name:begin" "$doc"; then
		NAME=$name awk -v file="$file" '
			$0 ~ "^<!-- " ENVIRON["NAME"] ":begin" {
				while ((getline line < file) > 0) print line
				skip = 1; next
			}
			$0 ~ "^<!-- " ENVIRON["NAME"] ":end" { skip = 0; next }
			!skip { print }' "$doc" >"$doc.tmp"
		mv "$doc.tmp" "$doc"
	else
		{ echo; cat "$file"; } >>"$doc"
	fi
}
