#!/usr/bin/env bash
# Check that the Debian packages needed to build and test tst are installed.
#
# As root, installs the missing ones with apt-get. Otherwise prints the
# apt-get command to run and exits 1. It also creates the de_DE.UTF-8
# locale. With everything present it makes one dpkg-query call and one
# locale -a call and returns at once.
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
	locales                    # localedef and the de_DE source for ensure_locale
	clang-14                   # test/fuzz: libFuzzer and sanitizer builds
	libclang-rt-14-dev         # libFuzzer, ASan and UBSan runtimes
	valgrind                   # test/valgrind.sh, in make test-long
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

# sql/reliability.sql sets lc_numeric to a comma-decimal locale.
ensure_locale() {
	if locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: the de_DE.UTF-8 locale is missing; create it with:"
		echo "  sudo localedef -i de_DE -f UTF-8 de_DE.UTF-8"
		return 1
	fi
	localedef -i de_DE -f UTF-8 de_DE.UTF-8
}

if [ ${#missing[@]} -eq 0 ]; then
	ensure_locale
	exit $?
fi

echo "deps: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: install them with:"
	echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}"
	exit 1
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
ensure_locale
