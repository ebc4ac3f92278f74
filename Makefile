# tst: temporal sparse transformers inside PostgreSQL (PGXS build)

EXTENSION = tst
EXTVERSION = 0.2.0

MODULE_big = tst
CORE_SRCS = $(sort $(wildcard src/core/*.c))
GLUE_SRCS = $(sort $(wildcard src/*.c))
OBJS = $(GLUE_SRCS:.c=.o) $(CORE_SRCS:.c=.o)

# The install script of the current version is assembled from src/sql/*.sql.
# Released versions keep their install script frozen in src/sql/released/,
# and src/sql/upgrade/ holds one upgrade script per release step, so that
# ALTER EXTENSION tst UPDATE works from every earlier version.
SQL_PARTS = $(sort $(wildcard src/sql/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out src/sql/released/$(EXTENSION)--$(EXTVERSION).sql,$(wildcard src/sql/released/*.sql)) \
	$(wildcard src/sql/upgrade/*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

OPENBLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
OPENBLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

PG_CPPFLAGS = -Isrc -Isrc/core $(OPENBLAS_CFLAGS)
# -fno-math-errno lets sqrtf vectorize (src/core/optim.c); tst never reads errno
# after a math function. It changes no result, unlike -ffast-math.
PG_CFLAGS = -std=gnu11 -fno-math-errno -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(EXTRA_CFLAGS)
SHLIB_LINK = $(OPENBLAS_LIBS) -lm

EXTRA_CLEAN = $(DATA_built) results regression.diffs regression.out test/core/build

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(DATA_built): $(SQL_PARTS)
	cat $^ > $@

# Everything below is driven by scripts so that `make test` and `make demo`
# work on a fresh machine; see test/run-all.sh and demo/run.sh.
.PHONY: test test-long demo core-test bench

core-test:
	$(MAKE) -C test/core

test:
	bash test/run-all.sh

# Every suite of make test, with each libFuzzer target run for 60 s, and the
# TAP tests that run only with TST_TEST_LONG=1 (the 60 s pgbench run).
test-long:
	TST_FUZZ_SECONDS=60 TST_TEST_LONG=1 bash test/run-all.sh

demo:
	bash demo/run.sh

bench:
	bash bench/run.sh
