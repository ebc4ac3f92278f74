/*
 * test_pattern.c
 *		Attention pattern contents, counts and size limits.
 */
#include <stdlib.h>

#include "harness.h"
#include "kernels.h"

static int	live_allocations;

static void *
counting_alloc(void *ctx, size_t size)
{
	(void) ctx;
	live_allocations++;
	return malloc(size);
}

static void
counting_free(void *ctx, void *ptr)
{
	(void) ctx;
	if (ptr != NULL)
		live_allocations--;
	free(ptr);
}

static const TstAllocator counting_allocator = {counting_alloc, counting_free, NULL};

/* Compare row i of a pattern with an expected key list. */
static bool
row_equals(const TstPattern *p, int i, const int32_t *keys, int n)
{
	if (p->rowptr[i + 1] - p->rowptr[i] != n)
		return false;
	for (int j = 0; j < n; j++)
		if (p->cols[p->rowptr[i] + j] != keys[j])
			return false;
	return true;
}

TEST(logsparse_doc_example)
{
	TstPattern	p;
	char		errmsg[TST_ERRMSG_LEN];
	static const int32_t expected[] = {5, 21, 29, 33, 35, 37, 38, 39, 40};

	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOGSPARSE, 4, 41, &tst_malloc_allocator, errmsg) == TST_OK);
	CHECK(row_equals(&p, 40, expected, 9));
	/* Token 5: local 2..5 and 2 - 2 = 0. */
	CHECK(row_equals(&p, 5, (const int32_t[]) {0, 2, 3, 4, 5}, 5));
	/* Token 4: local 1..4; 1 - 2 < 0, so no link. */
	CHECK(row_equals(&p, 4, (const int32_t[]) {1, 2, 3, 4}, 4));
	CHECK(row_equals(&p, 0, (const int32_t[]) {0}, 1));
	tst_pattern_free(&p, &tst_malloc_allocator);
}

TEST(local_and_dense_rows)
{
	TstPattern	p;
	char		errmsg[TST_ERRMSG_LEN];

	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 3, 6, &tst_malloc_allocator, errmsg) == TST_OK);
	CHECK(row_equals(&p, 0, (const int32_t[]) {0}, 1));
	CHECK(row_equals(&p, 1, (const int32_t[]) {0, 1}, 2));
	CHECK(row_equals(&p, 5, (const int32_t[]) {3, 4, 5}, 3));
	CHECK(p.nnz == 1 + 2 + 3 * 4);
	tst_pattern_free(&p, &tst_malloc_allocator);

	CHECK(tst_pattern_build(&p, TST_ATTENTION_DENSE, 2, 5, &tst_malloc_allocator, errmsg) == TST_OK);
	CHECK(row_equals(&p, 4, (const int32_t[]) {0, 1, 2, 3, 4}, 5));
	CHECK(p.nnz == 15);
	tst_pattern_free(&p, &tst_malloc_allocator);

	/* W = 1 leaves only the token itself. */
	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 1, 4, &tst_malloc_allocator, errmsg) == TST_OK);
	CHECK(row_equals(&p, 3, (const int32_t[]) {3}, 1));
	tst_pattern_free(&p, &tst_malloc_allocator);
}

/* Every row is ascending, causal, ends with the token itself, and matches the kind. */
TEST(patterns_are_causal_and_sorted)
{
	static const int windows[] = {1, 2, 3, 4, 8, 50};
	static const int tokens[] = {1, 2, 7, 33, 100};

	for (int kind = 0; kind <= TST_ATTENTION_LOGSPARSE; kind++)
		for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++)
			for (size_t t = 0; t < sizeof(tokens) / sizeof(tokens[0]); t++)
			{
				TstPattern	p;
				char		errmsg[TST_ERRMSG_LEN];
				int			W = windows[w], N = tokens[t];
				bool		ok = true;

				if (tst_pattern_build(&p, (TstAttentionKind) kind, W, N,
									  &tst_malloc_allocator, errmsg) != TST_OK)
				{
					CHECK(!"pattern build failed");
					continue;
				}
				ok = ok && p.nnz == tst_pattern_count((TstAttentionKind) kind, W, N);
				ok = ok && p.rowptr[0] == 0 && p.rowptr[N] == p.nnz;
				for (int i = 0; i < N && ok; i++)
				{
					int64_t		start = p.rowptr[i], end = p.rowptr[i + 1];
					int			in_window = 0;

					ok = end > start && p.cols[end - 1] == i;
					for (int64_t j = start; j < end && ok; j++)
					{
						int			c = p.cols[j];

						ok = c >= 0 && c <= i && (j == start || c > p.cols[j - 1]);
						if (c > i - W)
							in_window++;
						else if (kind == TST_ATTENTION_LOCAL)
							ok = false;
						else if (kind == TST_ATTENTION_LOGSPARSE)
						{
							int			gap = (i - (W - 1)) - c;

							/* A link below the window is a power of two >= 2. */
							ok = gap >= 2 && (gap & (gap - 1)) == 0;
						}
					}
					if (kind == TST_ATTENTION_DENSE)
						ok = ok && end - start == i + 1;
					else
						ok = ok && in_window == (i + 1 < W ? i + 1 : W);
				}
				if (!ok)
					printf("    %s W=%d N=%d is wrong\n", tst_attention_name((TstAttentionKind) kind), W, N);
				CHECK(ok);
				tst_pattern_free(&p, &tst_malloc_allocator);
			}
}

TEST(dense_too_large_fails_cleanly)
{
	TstPattern	p;
	char		errmsg[TST_ERRMSG_LEN] = "";

	live_allocations = 0;
	/* 100000 tokens: 5e9 pairs, 20 GB of keys. */
	CHECK(tst_pattern_build(&p, TST_ATTENTION_DENSE, 8, 100000, &counting_allocator, errmsg) == TST_ERR_TOO_LARGE);
	CHECK(live_allocations == 0);
	CHECK(p.rowptr == NULL);
	CHECK(p.cols == NULL);
	CHECK(errmsg[0] != '\0');
	printf("    message: %s\n", errmsg);

	/* The largest token count, with both sparse kinds, also fails at once. */
	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 1, INT32_MAX, &counting_allocator, errmsg) == TST_ERR_TOO_LARGE);
	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOGSPARSE, 1, INT32_MAX, &counting_allocator, errmsg) == TST_ERR_TOO_LARGE);
	CHECK(live_allocations == 0);

	/* Local attention at the same size stays small. */
	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 8, 100000, &counting_allocator, errmsg) == TST_OK);
	CHECK(p.nnz == 8 * 100000 - 28);
	tst_pattern_free(&p, &counting_allocator);
	CHECK(live_allocations == 0);
}

TEST(pattern_counts_in_closed_form)
{
	/* Brute-force counts against tst_pattern_count. */
	for (int W = 1; W <= 9; W++)
		for (int N = 1; N <= 70; N++)
		{
			int64_t		local = 0, links = 0;

			for (int i = 0; i < N; i++)
			{
				local += i + 1 < W ? i + 1 : W;
				for (int64_t step = 2; i - (W - 1) - step >= 0; step *= 2)
					links++;
			}
			CHECK(tst_pattern_count(TST_ATTENTION_LOCAL, W, N) == local);
			CHECK(tst_pattern_count(TST_ATTENTION_LOGSPARSE, W, N) == local + links);
			CHECK(tst_pattern_count(TST_ATTENTION_DENSE, W, N) == (int64_t) N * (N + 1) / 2);
		}
}

TEST(pattern_rejects_bad_arguments)
{
	TstPattern	p;
	char		errmsg[TST_ERRMSG_LEN];

	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 0, 5, &tst_malloc_allocator, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_pattern_build(&p, TST_ATTENTION_LOCAL, 2, 0, &tst_malloc_allocator, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_pattern_build(&p, (TstAttentionKind) 9, 2, 5, &tst_malloc_allocator, errmsg) == TST_ERR_ARGUMENT);
}

TEST(attention_names_round_trip)
{
	TstAttentionKind kind;

	for (int k = 0; k <= TST_ATTENTION_LOGSPARSE; k++)
	{
		CHECK(tst_attention_parse(tst_attention_name((TstAttentionKind) k), &kind));
		CHECK((int) kind == k);
	}
	CHECK(tst_attention_parse("LogSparse", &kind));
	CHECK(kind == TST_ATTENTION_LOGSPARSE);
	CHECK(!tst_attention_parse("loc", &kind));
	CHECK(!tst_attention_parse("locally", &kind));
	CHECK(!tst_attention_parse("", &kind));
	CHECK(!tst_attention_parse(NULL, &kind));
}

int
main(void)
{
	RUN(logsparse_doc_example);
	RUN(local_and_dense_rows);
	RUN(patterns_are_causal_and_sorted);
	RUN(dense_too_large_fails_cleanly);
	RUN(pattern_counts_in_closed_form);
	RUN(pattern_rejects_bad_arguments);
	RUN(attention_names_round_trip);
	return test_summary();
}
