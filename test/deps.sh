#!/usr/bin/env bash
# Check that the Debian packages needed to build and test tst are installed.
#
# As root, installs the missing ones with apt-get. Otherwise prints the
# apt-get command to run and exits 1. With everything present it makes a
# single dpkg-query call and returns at once.
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
	make
	gcc
	pkg-config
	postgresql-15              # server and psql
	postgresql-server-dev-15   # pg_config, PGXS, pg_regress
	postgresql-common          # pg_virtualenv
	libopenblas-dev
	python3                    # /usr/bin/python3 for the PyTorch reference
	python3-numpy
	python3-torch
	python3-vega-datasets      # seattle-weather.csv for the demo
)

# PostgreSQL's TAP modules (PostgreSQL::Test::Cluster) need IPC::Run.
if compgen -G 'test/tap/*.pl' >/dev/null; then
	packages+=(libipc-run-perl)
fi

installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for name in "${packages[@]}"; do
	if ! grep -qx "$name installed" <<<"$installed"; then
		missing+=("$name")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: install them with:"
	echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}"
	exit 1
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
