#!/usr/bin/env bash
# Build tst and run every test suite (`make test`, and CI through .ci/run).
#
# Steps: Debian packages (test/deps.sh), a build with warnings as errors,
# `make install` (without root: a check that the installed copy is this
# build), then the suites:
#   core       engine unit tests, `make -C test/core check`
#   reference  parity with PyTorch, `bash test/reference/run.sh`
#   regress    pg_regress through `make installcheck`  } both inside one
#   ett        ETTh1 forecast test, test/ett/run.sh    } pg_virtualenv cluster
#   sanitize   engine unit tests under ASan and UBSan, test/fuzz core-check
#   fuzz       libFuzzer targets, test/fuzz run (TST_FUZZ_SECONDS each)
#   tap        PostgreSQL TAP tests, test/tap/*.pl through prove; the long
#              ones skip themselves unless TST_TEST_LONG=1 (make test-long)
#   valgrind   make test-long only: sql/*.sql against a server under
#              valgrind memcheck, test/valgrind.sh
#
# Each suite reports "N passed, N failed" (pg_regress and prove have their own
# summaries, parsed below). A suite that exits non-zero without a failed count,
# or prints no count at all, counts as 1 failed. A suite whose files do not
# exist yet is skipped with a note, unless it is listed in REQUIRED_SUITES, in
# which case its absence is a failure. The last line printed is the total,
# "N passed, N failed", and the exit status is 1 when anything failed.
#
# Logs of every step are kept in log/run-all/.
set -uo pipefail

cd "$(dirname "$0")/.."
repo_root=$(pwd)

# Suites that have landed in the tree, so that a missing one fails the run.
# The tap suite is optional and never listed.
REQUIRED_SUITES="core reference regress ett"

log_dir="$repo_root/log/run-all"
results_file="$log_dir/results"

# Print STDIN indented, so that the count lines of the suites never stand alone
# on a line and only the final total does.
indent() {
	sed -u 's/^/    /'
}

# Append one suite result: NAME PASSED FAILED NOTE...
record() {
	local name=$1 passed=$2 failed=$3
	shift 3
	printf '%s %d %d %s\n' "$name" "$passed" "$failed" "$*" >>"$results_file"
	if [ -n "$*" ]; then
		echo "== suite $name: $passed passed, $failed failed ($*)"
	else
		echo "== suite $name: $passed passed, $failed failed"
	fi
}

# Record a suite whose files are missing: a skip, or a failure when required.
record_missing() {
	local name=$1 what=$2
	if [[ " $REQUIRED_SUITES " == *" $name "* ]]; then
		record "$name" 0 1 "FAILED: $what is missing"
	else
		record "$name" 0 0 "skipped: $what does not exist yet"
	fi
}

# Run a suite whose output ends with "N passed, N failed": NAME COMMAND...
run_counted_suite() {
	local name=$1
	shift
	local log="$log_dir/$name.log" start status passed failed count_line note=""
	echo "== suite $name: $*"
	start=$SECONDS
	"$@" </dev/null 2>&1 | tee "$log" | indent
	status=${PIPESTATUS[0]}
	count_line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$count_line" ]; then
		passed=0
		failed=1
		note="printed no count, exit status $status"
	else
		passed=$(sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/' <<<"$count_line")
		failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$count_line")
		if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
			failed=1
			note="exit status $status with no failed test"
		fi
	fi
	record "$name" "$passed" "$failed" "$note${note:+, }$((SECONDS - start)) s"
}

# Run pg_regress through PGXS `make installcheck` against the running server.
run_regress_suite() {
	local log="$log_dir/regress.log" start status passed=0 failed=0 note="" summary
	if ! compgen -G 'sql/*.sql' >/dev/null; then
		record_missing regress "sql/*.sql"
		return
	fi
	echo "== suite regress: make installcheck"
	start=$SECONDS
	rm -f results/regression.diffs regression.diffs
	make installcheck </dev/null 2>&1 | tee "$log" | indent
	status=${PIPESTATUS[0]}

	# pg_regress 15 closes with one of these lines, framed by "=" lines:
	#   All N tests passed.
	#   P of T tests passed, I failed test(s) ignored.
	#   F of T tests failed.
	#   F of T tests failed, I of these failures ignored.
	summary=$(grep -E '^ *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests (passed|failed))' "$log" | tail -n 1)
	if [[ $summary =~ All\ ([0-9]+)\ tests\ passed ]]; then
		passed=${BASH_REMATCH[1]}
	elif [[ $summary =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ passed ]]; then
		passed=${BASH_REMATCH[1]}
	elif [[ $summary =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed,\ ([0-9]+)\ of\ these ]]; then
		failed=$((BASH_REMATCH[1] - BASH_REMATCH[3]))
		passed=$((BASH_REMATCH[2] - BASH_REMATCH[1]))
	elif [[ $summary =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed ]]; then
		failed=${BASH_REMATCH[1]}
		passed=$((BASH_REMATCH[2] - BASH_REMATCH[1]))
	else
		failed=1
		note="pg_regress printed no summary, exit status $status"
	fi
	if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="exit status $status with no failed test"
	fi

	local diffs
	for diffs in results/regression.diffs regression.diffs; do
		if [ -s "$diffs" ]; then
			echo "== $diffs:"
			cat "$diffs"
		fi
	done
	record regress "$passed" "$failed" "$note${note:+, }$((SECONDS - start)) s"
}

run_ett_suite() {
	if [ ! -f test/ett/run.sh ]; then
		record_missing ett test/ett/run.sh
		return
	fi
	run_counted_suite ett bash test/ett/run.sh
}

# Run the suites that need a server. pg_virtualenv calls this inside its cluster.
run_cluster_suites() {
	run_regress_suite
	run_ett_suite
}

# Run the PostgreSQL TAP tests through prove, with PostgreSQL::Test::Cluster.
run_tap_suite() {
	local log="$log_dir/tap.log" start status passed=0 failed=0 note="" tests
	local pgxs_dir perl_lib bindir work
	local -a tap_files
	tap_files=(test/tap/*.pl)
	if [ ! -e "${tap_files[0]}" ]; then
		record tap 0 0 "skipped: no test/tap/*.pl"
		return
	fi
	echo "== suite tap: prove ${tap_files[*]}"
	start=$SECONDS
	pgxs_dir=$(dirname "$(pg_config --pgxs)")/../..
	perl_lib=$(cd "$pgxs_dir/src/test/perl" && pwd)
	bindir=$(pg_config --bindir)

	# initdb refuses to run as root, so root runs the tests as postgres in a
	# scratch copy that postgres can write its tmp_check/ into.
	work=$(mktemp -d)
	cp -r test/tap "$work/"
	local -a prove_cmd=(env "PATH=$bindir:$PATH" "PG_REGRESS=$pgxs_dir/src/test/regress/pg_regress"
		"TESTDIR=$work" prove -I "$perl_lib" -I "$work/tap" "${tap_files[@]/#test\//$work/}")
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$work"
		(cd "$work" && runuser -u postgres -- "${prove_cmd[@]}") </dev/null 2>&1 | tee "$log" | indent
	else
		(cd "$work" && "${prove_cmd[@]}") </dev/null 2>&1 | tee "$log" | indent
	fi
	status=${PIPESTATUS[0]}
	rm -rf "$log_dir/tap-tmp_check"
	cp -r "$work/tmp_check" "$log_dir/tap-tmp_check" 2>/dev/null || true
	rm -rf "$work"

	# prove closes with "Files=F, Tests=T, ..." and lists "Failed X/Y subtests"
	# per failing file.
	tests=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$log" | tail -n 1)
	failed=$(sed -nE 's/.*Failed ([0-9]+)\/[0-9]+ subtests.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
	if [ -z "$tests" ]; then
		tests=0
		failed=1
		note="prove printed no summary, exit status $status"
	elif [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="exit status $status with no failed test"
	fi
	passed=$((tests - failed > 0 ? tests - failed : 0))
	record tap "$passed" "$failed" "$note${note:+, }$((SECONDS - start)) s"
}

# Print the total of every recorded suite and exit with its status.
finish() {
	local passed failed
	passed=$(awk '{ s += $2 } END { print s + 0 }' "$results_file")
	failed=$(awk '{ s += $3 } END { print s + 0 }' "$results_file")
	echo "== results (logs in log/run-all/):"
	awk '{ note = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ ?/, "", note)
	       printf "    %-10s %4d passed, %4d failed  (%s)\n", $1, $2, $3, note }' "$results_file"
	echo "$passed passed, $failed failed"
	if [ "$failed" -ne 0 ]; then
		exit 1
	fi
	exit 0
}

# Record a failed step that stops the run, then finish.
fail_step() {
	record "$1" 0 1 "FAILED: $2"
	finish
}

if [ "${1:-}" = "--in-cluster" ]; then
	# Called back by pg_virtualenv below, with PGHOST etc. set for its cluster.
	results_file=$2
	run_cluster_suites
	exit 0
fi

mkdir -p "$log_dir"
: >"$results_file"
run_start=$SECONDS

echo "== deps: bash test/deps.sh"
if ! bash test/deps.sh 2>&1 | indent; then
	fail_step deps "missing Debian packages, see above"
fi

# -B rebuilds every object, so that none built earlier escapes -Werror.
echo "== build: make -B EXTRA_CFLAGS=-Werror"
if ! make -B -j"$(nproc)" EXTRA_CFLAGS=-Werror </dev/null >"$log_dir/build.log" 2>&1; then
	indent <"$log_dir/build.log"
	fail_step build "make -B EXTRA_CFLAGS=-Werror failed, see above"
fi

# Compare the built tst with the installed one, ignoring debug information.
installed_is_current() {
	local installed_so installed_sql built tmp
	installed_so="$(pg_config --pkglibdir)/tst.so"
	installed_sql="$(pg_config --sharedir)/extension/$(ls tst--*.sql | head -n 1)"
	[ -f "$installed_so" ] && [ -f "$installed_sql" ] || return 1
	cmp -s tst.control "$(pg_config --sharedir)/extension/tst.control" || return 1
	cmp -s "$(ls tst--*.sql | head -n 1)" "$installed_sql" || return 1
	tmp=$(mktemp -d)
	objcopy --strip-debug tst.so "$tmp/built.so" &&
		objcopy --strip-debug "$installed_so" "$tmp/installed.so" &&
		cmp -s "$tmp/built.so" "$tmp/installed.so"
	built=$?
	rm -rf "$tmp"
	return $built
}

if [ "$(id -u)" -ne 0 ] && [ ! -w "$(pg_config --pkglibdir)" ]; then
	# Without root, test an installed copy, provided that it is this build.
	echo "== install: not root, checking the installed tst against this build"
	if ! installed_is_current; then
		echo "    The installed tst is missing or differs from this build, and make install"
		echo "    writes to $(pg_config --pkglibdir) and $(pg_config --sharedir)/extension,"
		echo "    which needs root. Run 'sudo make install', then 'make test' again."
		fail_step install "installed tst missing or out of date, and not root"
	fi
else
	echo "== install: make install"
	if ! make install </dev/null >"$log_dir/install.log" 2>&1; then
		indent <"$log_dir/install.log"
		fail_step install "make install failed, see above"
	fi
fi

if [ -f test/core/Makefile ]; then
	run_counted_suite core make -C test/core check
else
	record_missing core test/core/Makefile
fi

if [ -f test/reference/run.sh ]; then
	run_counted_suite reference bash test/reference/run.sh
else
	record_missing reference test/reference/run.sh
fi

# Sanitizer and fuzzing suites (test/fuzz/Makefile): the engine unit tests
# under AddressSanitizer and UndefinedBehaviorSanitizer, then every libFuzzer
# target for TST_FUZZ_SECONDS each (make test-long sets 60).
if [ -f test/fuzz/Makefile ]; then
	run_counted_suite sanitize make -C test/fuzz core-check
	run_counted_suite fuzz make -C test/fuzz run FUZZ_SECONDS="${TST_FUZZ_SECONDS:-10}"
fi

# One throwaway cluster for every suite that needs a server.
echo "== cluster: pg_virtualenv -t -v 15"
cluster_log="$log_dir/pg_virtualenv.log"
pg_virtualenv -t -v 15 bash "$repo_root/test/run-all.sh" --in-cluster "$results_file" </dev/null 2>&1 | tee "$cluster_log"
cluster_status=${PIPESTATUS[0]}
for suite in regress ett; do
	if ! grep -q "^$suite " "$results_file"; then
		record "$suite" 0 1 "FAILED: did not run, pg_virtualenv exit status $cluster_status"
	fi
done

run_tap_suite

# make test-long: the regression suite against a server under valgrind.
if [ "${TST_TEST_LONG:-0}" = 1 ]; then
	run_counted_suite valgrind bash test/valgrind.sh
fi

echo "== total time: $((SECONDS - run_start)) s"
finish
