/*
 * util.c
 *		Allocator, random numbers, clock, error messages and attention names.
 */
#define _POSIX_C_SOURCE 199309L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tst_core.h"
#include "kernels.h"

static void *
malloc_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void
malloc_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

const TstAllocator tst_malloc_allocator = {malloc_alloc, malloc_free, NULL};

/* Format a message into errmsg (TST_ERRMSG_LEN bytes) when errmsg is not NULL. */
void
tst_set_error(char *errmsg, const char *fmt,...)
{
	va_list		args;

	if (errmsg == NULL)
		return;
	va_start(args, fmt);
	vsnprintf(errmsg, TST_ERRMSG_LEN, fmt, args);
	va_end(args);
}

/* Release memory through an allocator whose free may be NULL. */
void
tst_release(const TstAllocator *allocator, void *ptr)
{
	if (ptr != NULL && allocator->free != NULL)
		allocator->free(allocator->ctx, ptr);
}

static uint64_t
splitmix64(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Seed the four state words from splitmix64, so that no seed gives all zeros. */
void
tst_rng_seed(TstRng *rng, uint64_t seed)
{
	uint64_t	state = seed;

	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&state);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Advance xoshiro256** by one step. */
uint64_t
tst_rng_next(TstRng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
double
tst_rng_uniform(TstRng *rng)
{
	return (double) (tst_rng_next(rng) >> 11) * 0x1.0p-53;
}

double
tst_now_seconds(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0.0;
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static const char *const attention_names[] = {"dense", "local", "logsparse"};

const char *
tst_attention_name(TstAttentionKind kind)
{
	if ((int) kind < 0 || (int) kind > TST_ATTENTION_LOGSPARSE)
		return "unknown";
	return attention_names[kind];
}

/* Parse an attention name, ignoring ASCII case. */
bool
tst_attention_parse(const char *name, TstAttentionKind *kind)
{
	if (name == NULL)
		return false;
	for (int k = 0; k <= TST_ATTENTION_LOGSPARSE; k++)
	{
		const char *expected = attention_names[k];
		size_t		i = 0;

		while (name[i] != '\0' && expected[i] != '\0')
		{
			char		c = name[i];

			if (c >= 'A' && c <= 'Z')
				c = (char) (c - 'A' + 'a');
			if (c != expected[i])
				break;
			i++;
		}
		if (name[i] == '\0' && expected[i] == '\0')
		{
			*kind = (TstAttentionKind) k;
			return true;
		}
	}
	return false;
}
