#!/usr/bin/env bash
# Run the regression suite (sql/*.sql) against a PostgreSQL server that runs
# under valgrind memcheck, and report every invalid read, invalid write,
# invalid free and use of uninitialised memory.
#
# Usage: bash test/valgrind.sh [TEST...]   (default: every sql/*.sql)
#
# The server runs from a scratch data directory on a Unix socket only, so it
# never touches another cluster. Every server process writes its own log
# (log/valgrind/vg.PID.log). Two checks, counted in a last line "N passed,
# N failed" for test/run-all.sh (make test-long): pg_regress passes, and no
# valgrind error has a frame in tst.so. Other errors are printed for review.
#
# NOTE: Debian's PostgreSQL is built without USE_VALGRIND, so palloc chunks
# are not marked for memcheck. An overrun inside a memory context block goes
# unseen. Memcheck reports reads of uninitialised memory, and accesses outside
# the malloc'd blocks that hold the contexts.
#
# Needs the installed tst (make install) and the valgrind package.
set -uo pipefail

cd "$(dirname "$0")/.."
repo_root=$(pwd)
log_dir="$repo_root/log/valgrind"
bindir=$(pg_config --bindir)
pg_regress="$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress"
port=${TST_VALGRIND_PORT:-54329}

if ! command -v valgrind >/dev/null; then
	echo "valgrind is not installed (apt-get install valgrind)" >&2
	exit 1
fi

if [ $# -gt 0 ]; then
	tests=("$@")
else
	tests=()
	for f in sql/*.sql; do
		tests+=("$(basename "$f" .sql)")
	done
fi

rm -rf "$log_dir"
mkdir -p "$log_dir"
work=$(mktemp -d)
cp -r sql expected "$work/"

# initdb and postgres refuse to run as root: run them as postgres.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$work" "$log_dir"
	db_user=postgres
else
	db_user=$(id -un)
fi

as_owner "$bindir/initdb" -D "$work/data" --no-sync -A trust -U "$db_user" >"$log_dir/initdb.log" 2>&1 ||
	{ cat "$log_dir/initdb.log"; exit 1; }
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
fsync = off
max_connections = 20
log_min_messages = warning
EOF

# OpenBLAS threads only slow valgrind down; one thread keeps the run serial.
start=$SECONDS
as_owner env OPENBLAS_NUM_THREADS=1 valgrind --quiet --trace-children=yes \
	--leak-check=no --track-origins=yes --num-callers=30 \
	--suppressions="$repo_root/test/valgrind.supp" \
	--log-file="$log_dir/vg.%p.log" \
	"$bindir/postgres" -D "$work/data" >"$log_dir/server.log" 2>&1 &
server_pid=$!

stop_server() {
	as_owner "$bindir/pg_ctl" -D "$work/data" -m fast -w -t 300 stop >/dev/null 2>&1
	wait "$server_pid" 2>/dev/null
}
trap 'stop_server; rm -rf "$work"' EXIT

for _ in $(seq 1 300); do
	"$bindir/pg_isready" -q -h "$work" -p "$port" && break
	sleep 1
done
if ! "$bindir/pg_isready" -q -h "$work" -p "$port"; then
	echo "the server under valgrind did not start; see $log_dir/server.log" >&2
	exit 1
fi

echo "== pg_regress under valgrind: ${tests[*]}"
(cd "$work" && as_owner "$pg_regress" --inputdir=. --outputdir=. \
	--bindir="$bindir" --host="$work" --port="$port" --user="$db_user" \
	--load-extension=tst --dbname=contrib_regression "${tests[@]}") 2>&1 | tee "$log_dir/regress.log"
regress_status=${PIPESTATUS[0]}
if [ -s "$work/regression.diffs" ]; then
	cp "$work/regression.diffs" "$log_dir/"
fi

stop_server
trap 'rm -rf "$work"' EXIT
echo "== $((SECONDS - start)) s under valgrind"

# Each memcheck error starts with a line like "==PID== Invalid read of size 8"
# and ends at the next blank "==PID== " line.
errors=$(cat "$log_dir"/vg.*.log 2>/dev/null | grep -cE '==[0-9]+== (Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|Syscall param|Source and destination overlap)')
tst_errors=$(awk '
	/==[0-9]+== (Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|Syscall param|Source and destination overlap)/ { in_error = 1; has_tst = 0; next }
	in_error && /tst\.so/ { has_tst = 1 }
	in_error && /==[0-9]+== $/ { if (has_tst) n++; in_error = 0 }
	END { print n + 0 }' "$log_dir"/vg.*.log 2>/dev/null)
processes=$(ls "$log_dir"/vg.*.log 2>/dev/null | wc -l)

if [ "$errors" -gt 0 ]; then
	echo "== valgrind errors:"
	grep -l -E '==[0-9]+== [A-Z]' "$log_dir"/vg.*.log | while read -r f; do
		echo "--- $f"
		cat "$f"
	done
fi
echo "== $processes server processes traced, $errors valgrind errors, $tst_errors with a frame in tst.so"
echo "== pg_regress exit status $regress_status (logs in $log_dir)"
passed=0
failed=0
for ok in "$((regress_status == 0))" "$((tst_errors == 0))"; do
	if [ "$ok" -eq 1 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
