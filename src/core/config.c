/*
 * config.c
 *		Configuration defaults and validation.
 *
 * Validation checks every field against the ranges in docs/model.md, then
 * every derived size in int64 with overflow checks: parameter tensors, the
 * one block that holds all parameters, and the activations of one window.
 * A configuration passes only when each of those fits in TST_MAX_ALLOC_BYTES,
 * so that the model can be created and run on at least one window.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define MAX_CONTEXT 100000
#define MAX_HORIZON 10000
#define MAX_D_MODEL 4096
#define MAX_LAYERS 64
#define MAX_D_FF 16384
#define MAX_WINDOW 100000

void
tst_config_default(TstConfig *config)
{
	static const float default_quantiles[] = {0.025f, 0.1f, 0.5f, 0.9f, 0.975f};

	memset(config, 0, sizeof(*config));
	config->context = 96;
	config->horizon = 24;
	config->patch_len = 16;
	config->patch_stride = 8;
	config->d_model = 64;
	config->n_heads = 4;
	config->n_layers = 2;
	config->d_ff = 128;
	config->dropout = 0.1f;
	config->attention = TST_ATTENTION_LOCAL;
	config->window = 8;
	config->n_quantiles = 5;
	memcpy(config->quantiles, default_quantiles, sizeof(default_quantiles));
}

int32_t
tst_config_num_patches(const TstConfig *config)
{
	return (config->context - config->patch_len) / config->patch_stride + 1;
}

static bool
check_range(const char *field, int32_t value, int32_t lo, int32_t hi, char *errmsg)
{
	if (value >= lo && value <= hi)
		return true;
	tst_set_error(errmsg, "%s %d is out of range (%d to %d)", field, (int) value, (int) lo, (int) hi);
	return false;
}

/* a * b for non-negative a and b; false on int64 overflow. */
static bool
mul64(int64_t a, int64_t b, int64_t *result)
{
	if (a != 0 && b > INT64_MAX / a)
		return false;
	*result = a * b;
	return true;
}

static bool
add64(int64_t a, int64_t b, int64_t *result)
{
	if (b > INT64_MAX - a)
		return false;
	*result = a + b;
	return true;
}

/*
 * Running total of derived element counts, with the first overflow or
 * oversized tensor recorded in the message.
 */
typedef struct SizeCheck
{
	int64_t		total;			/* elements of 4 bytes */
	bool		failed;
	TstStatus	status;
	char	   *errmsg;
} SizeCheck;

/* Add a tensor of count = a * b * c elements, checking its own size. */
static void
size_add(SizeCheck *check, const char *name, int64_t a, int64_t b, int64_t c)
{
	int64_t		count;

	if (check->failed)
		return;
	if (!mul64(a, b, &count) || !mul64(count, c, &count))
	{
		tst_set_error(check->errmsg, "size of %s overflows a 64-bit count", name);
		check->failed = true;
		check->status = TST_ERR_TOO_LARGE;
		return;
	}
	if ((uint64_t) count > TST_MAX_ALLOC_BYTES / sizeof(float))
	{
		tst_set_error(check->errmsg, "%s of %lld values exceeds the 1 GiB allocation limit",
					  name, (long long) count);
		check->failed = true;
		check->status = TST_ERR_TOO_LARGE;
		return;
	}
	if (!add64(check->total, count, &check->total))
	{
		tst_set_error(check->errmsg, "total size overflows a 64-bit count at %s", name);
		check->failed = true;
		check->status = TST_ERR_TOO_LARGE;
	}
}

/* Fail when the running total of a block exceeds the allocation limit. */
static void
size_total(SizeCheck *check, const char *what)
{
	if (check->failed)
		return;
	if ((uint64_t) check->total > TST_MAX_ALLOC_BYTES / sizeof(float))
	{
		tst_set_error(check->errmsg, "%s of %lld values exceeds the 1 GiB allocation limit",
					  what, (long long) check->total);
		check->failed = true;
		check->status = TST_ERR_TOO_LARGE;
	}
}

static bool
validate_fields(const TstConfig *c, char *errmsg)
{
	if (!check_range("context", c->context, 1, MAX_CONTEXT, errmsg) ||
		!check_range("horizon", c->horizon, 1, MAX_HORIZON, errmsg) ||
		!check_range("patch_len", c->patch_len, 1, c->context, errmsg) ||
		!check_range("patch_stride", c->patch_stride, 1, c->patch_len, errmsg) ||
		!check_range("d_model", c->d_model, 1, MAX_D_MODEL, errmsg) ||
		!check_range("n_heads", c->n_heads, 1, c->d_model, errmsg) ||
		!check_range("n_layers", c->n_layers, 1, MAX_LAYERS, errmsg) ||
		!check_range("d_ff", c->d_ff, 1, MAX_D_FF, errmsg) ||
		!check_range("window", c->window, 1, MAX_WINDOW, errmsg) ||
		!check_range("n_quantiles", c->n_quantiles, 1, TST_MAX_QUANTILES, errmsg))
		return false;

	if (c->d_model % c->n_heads != 0)
	{
		tst_set_error(errmsg, "d_model %d is not a multiple of n_heads %d",
					  (int) c->d_model, (int) c->n_heads);
		return false;
	}
	/* Written so that NaN fails too. */
	if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
	{
		tst_set_error(errmsg, "dropout %g is out of range (0 to below 1)", (double) c->dropout);
		return false;
	}
	if ((int) c->attention < 0 || (int) c->attention > TST_ATTENTION_LOGSPARSE)
	{
		tst_set_error(errmsg, "attention kind %d is unknown", (int) c->attention);
		return false;
	}
	for (int q = 0; q < c->n_quantiles; q++)
	{
		float		tau = c->quantiles[q];

		if (!(tau > 0.0f && tau < 1.0f))
		{
			tst_set_error(errmsg, "quantile %g is not between 0 and 1 (exclusive)", (double) tau);
			return false;
		}
		if (q > 0 && !(tau > c->quantiles[q - 1]))
		{
			tst_set_error(errmsg, "quantiles are not strictly increasing: %g follows %g",
						  (double) tau, (double) c->quantiles[q - 1]);
			return false;
		}
	}
	return true;
}

TstStatus
tst_config_validate(const TstConfig *config, char *errmsg)
{
	int64_t		N;
	int64_t		D;
	int64_t		F;
	int64_t		HQ;
	int64_t		nnz;
	int64_t		layers;
	SizeCheck	params = {0, false, TST_OK, errmsg};
	SizeCheck	acts = {0, false, TST_OK, errmsg};

	if (config == NULL)
	{
		tst_set_error(errmsg, "configuration is missing");
		return TST_ERR_ARGUMENT;
	}
	if (!validate_fields(config, errmsg))
		return TST_ERR_CONFIG;

	N = tst_config_num_patches(config);
	D = config->d_model;
	F = config->d_ff;
	HQ = (int64_t) config->horizon * config->n_quantiles;
	layers = config->n_layers;
	nnz = tst_pattern_count(config->attention, config->window, (int32_t) N);

	/* Parameters, all in one allocation; per-layer tensors times layers. */
	size_add(&params, "patch.weight", D, config->patch_len, 1);
	size_add(&params, "patch.bias", D, 1, 1);
	size_add(&params, "pos", N, D, 1);
	size_add(&params, "layer norm weights and biases", layers, 4, D);
	size_add(&params, "attn.qkv.weight", layers, 3 * D, D);
	size_add(&params, "attn.qkv.bias", layers, 3 * D, 1);
	size_add(&params, "attn.out.weight", layers, D, D);
	size_add(&params, "attn.out.bias", layers, D, 1);
	size_add(&params, "ffn.fc1.weight", layers, F, D);
	size_add(&params, "ffn.fc1.bias", layers, F, 1);
	size_add(&params, "ffn.fc2.weight", layers, D, F);
	size_add(&params, "ffn.fc2.bias", layers, D, 1);
	size_add(&params, "ln_f weight and bias", 2, D, 1);
	size_add(&params, "head.weight", HQ, N, D);
	size_add(&params, "head.bias", HQ, 1, 1);
	size_total(&params, "parameter block");
	if (params.failed)
		return params.status;

	/* The attention pattern: int32 keys and int64 row offsets. */
	size_add(&acts, "attention pattern", nnz, 1, 1);
	size_add(&acts, "attention pattern offsets", N + 1, 2, 1);
	if (acts.failed)
		return acts.status;

	/* Activations of one window, for each layer, as tst_model_forward keeps them. */
	acts.total = 0;
	size_add(&acts, "patches", N, config->patch_len, 1);
	size_add(&acts, "embeddings", N, D, 3);
	size_add(&acts, "layer norm outputs", layers, N, 2 * D + 4);
	size_add(&acts, "qkv", layers, N, 3 * D);
	size_add(&acts, "attention probabilities", layers, config->n_heads, nnz);
	size_add(&acts, "attention outputs", layers, N, 5 * D);
	size_add(&acts, "feed-forward activations", layers, N, 2 * F);
	size_add(&acts, "head inputs", N, D, 2);
	size_add(&acts, "head outputs", HQ, 2, 1);
	size_total(&acts, "activation memory of one window");
	if (acts.failed)
		return acts.status;

	return TST_OK;
}
