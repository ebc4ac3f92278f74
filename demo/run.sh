#!/usr/bin/env bash
# Run the Seattle weather demo (`make demo`): build and install tst, start a
# throwaway cluster with pg_virtualenv and run demo/seattle.sql in it.
set -euo pipefail

cd "$(dirname "$0")/.."

bash test/deps.sh
echo "demo: building and installing tst"
make -s -j"$(nproc)"
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(pg_config --pkglibdir)" ]; then
	echo "demo: make install writes to $(pg_config --pkglibdir), which needs root." >&2
	echo "demo: run 'sudo make install', then 'make demo' again as root, or run it as root." >&2
	exit 1
fi
make -s install >/dev/null

csv=$(/usr/bin/python3 -c 'import os, vega_datasets
print(os.path.join(os.path.dirname(vega_datasets.__file__), "_data", "seattle-weather.csv"))')
if [ ! -f "$csv" ]; then
	echo "demo: $csv not found. Install the Debian package python3-vega-datasets." >&2
	exit 1
fi

start=$SECONDS
# seattle.sql reads the CSV from psql's standard input (\copy ... FROM pstdin).
pg_virtualenv -t -v 15 psql -X -v ON_ERROR_STOP=1 -f demo/seattle.sql <"$csv"
echo "demo: finished in $((SECONDS - start)) s (cluster start and stop included)"
