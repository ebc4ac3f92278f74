#!/bin/sh
# Build the parity driver against src/core and compare the C engine with the
# PyTorch reference. Extra arguments go to parity.py (--verbose, --only NAME,
# --seed N, --keep DIR).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$here/build"
mkdir -p "$build"

# One thread everywhere, so that sums are taken in the same order every run.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

cc -std=c11 -O2 -Wall -Wextra -Werror \
	-I"$root/src/core" \
	-o "$build/parity_driver" \
	"$here/parity_driver.c" "$root"/src/core/*.c \
	$(pkg-config --cflags --libs openblas) -lm

cd "$here"
exec /usr/bin/python3 parity.py "$build/parity_driver" "$@"
