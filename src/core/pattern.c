/*
 * pattern.c
 *		Causal attention patterns in compressed-row form.
 *
 * Row i lists the keys that query token i attends to, ascending, always
 * ending with i itself:
 *   dense      0 .. i
 *   local      max(0, i - W + 1) .. i
 *   logsparse  the local keys plus i - (W - 1) - 2^k for k = 1, 2, ...
 *              while that key is >= 0
 * Counts are int64 because N * W can pass 2^31 before the size limit stops it.
 */
#include <string.h>

#include "kernels.h"

/* Number of log-spaced keys below the local window of query i. */
static int64_t
logsparse_links(int32_t window, int64_t i)
{
	int64_t		base = i - (window - 1);
	int64_t		links = 0;

	for (int64_t step = 2; step <= base; step *= 2)
		links++;
	return links;
}

static int64_t
row_length(TstAttentionKind kind, int32_t window, int64_t i)
{
	int64_t		local = i + 1 < window ? i + 1 : window;

	switch (kind)
	{
		case TST_ATTENTION_DENSE:
			return i + 1;
		case TST_ATTENTION_LOCAL:
			return local;
		case TST_ATTENTION_LOGSPARSE:
			return local + logsparse_links(window, i);
	}
	return 0;
}

/*
 * Count the pairs in closed form, so that a huge n_tokens is rejected at once
 * instead of after a long loop.
 */
int64_t
tst_pattern_count(TstAttentionKind kind, int32_t window, int32_t n_tokens)
{
	int64_t		n = n_tokens;
	int64_t		w = window;
	int64_t		local;
	int64_t		max_base;
	int64_t		links = 0;

	if (n < 1 || w < 1)
		return 0;
	if (kind == TST_ATTENTION_DENSE)
		return n * (n + 1) / 2;

	local = n <= w ? n * (n + 1) / 2 : w * (w + 1) / 2 + (n - w) * w;
	if (kind == TST_ATTENTION_LOCAL)
		return local;

	/* Query i has floor(log2(i - W + 1)) links; bases run from 2 to N - W. */
	max_base = n - w;
	for (int k = 1; ((int64_t) 1 << k) <= max_base; k++)
	{
		int64_t		lo = (int64_t) 1 << k;
		int64_t		hi = ((int64_t) 1 << (k + 1)) - 1;

		if (hi > max_base)
			hi = max_base;
		links += (hi - lo + 1) * k;
	}
	return local + links;
}

/* Write the keys of row i, ascending, into keys. */
static void
fill_row(int32_t *keys, TstAttentionKind kind, int32_t window, int64_t i)
{
	int64_t		first = 0;
	int64_t		n = 0;

	if (kind != TST_ATTENTION_DENSE && i - window + 1 > 0)
		first = i - window + 1;
	if (kind == TST_ATTENTION_LOGSPARSE)
	{
		int64_t		links = logsparse_links(window, i);

		/* The farthest link (largest k) comes first. */
		for (int64_t k = links; k >= 1; k--)
			keys[n++] = (int32_t) (first - ((int64_t) 1 << k));
	}
	for (int64_t c = first; c <= i; c++)
		keys[n++] = (int32_t) c;
}

TstStatus
tst_pattern_build(TstPattern *pattern, TstAttentionKind kind,
				  int32_t window, int32_t n_tokens,
				  const TstAllocator *allocator, char *errmsg)
{
	int64_t		nnz;

	memset(pattern, 0, sizeof(*pattern));
	if ((int) kind < 0 || (int) kind > TST_ATTENTION_LOGSPARSE)
	{
		tst_set_error(errmsg, "attention kind %d is unknown", (int) kind);
		return TST_ERR_ARGUMENT;
	}
	if (window < 1 || n_tokens < 1)
	{
		tst_set_error(errmsg, "attention pattern needs window >= 1 and tokens >= 1, not %d and %d",
					  (int) window, (int) n_tokens);
		return TST_ERR_ARGUMENT;
	}

	nnz = tst_pattern_count(kind, window, n_tokens);
	if ((uint64_t) nnz > TST_MAX_ALLOC_BYTES / sizeof(int32_t) ||
		(uint64_t) n_tokens + 1 > TST_MAX_ALLOC_BYTES / sizeof(int64_t))
	{
		tst_set_error(errmsg, "%s attention pattern of %lld entries for %d tokens exceeds the 1 GiB allocation limit",
					  tst_attention_name(kind), (long long) nnz, (int) n_tokens);
		return TST_ERR_TOO_LARGE;
	}

	pattern->rowptr = allocator->alloc(allocator->ctx, ((size_t) n_tokens + 1) * sizeof(int64_t));
	pattern->cols = allocator->alloc(allocator->ctx, (size_t) nnz * sizeof(int32_t));
	if (pattern->rowptr == NULL || pattern->cols == NULL)
	{
		tst_pattern_free(pattern, allocator);
		tst_set_error(errmsg, "out of memory for a %s attention pattern of %lld entries",
					  tst_attention_name(kind), (long long) nnz);
		return TST_ERR_NOMEM;
	}

	pattern->n_tokens = n_tokens;
	pattern->nnz = nnz;
	pattern->rowptr[0] = 0;
	for (int64_t i = 0; i < n_tokens; i++)
	{
		fill_row(pattern->cols + pattern->rowptr[i], kind, window, i);
		pattern->rowptr[i + 1] = pattern->rowptr[i] + row_length(kind, window, i);
	}
	return TST_OK;
}

void
tst_pattern_free(TstPattern *pattern, const TstAllocator *allocator)
{
	tst_release(allocator, pattern->rowptr);
	tst_release(allocator, pattern->cols);
	pattern->rowptr = NULL;
	pattern->cols = NULL;
	pattern->nnz = 0;
	pattern->n_tokens = 0;
}
