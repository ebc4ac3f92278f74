/*
 * fuzz_config.c
 *		libFuzzer target for tst_config_validate.
 *
 * The input fills every field of a TstConfig. A configuration that passes
 * validation must be usable: when its model is small enough to run here, it
 * is created, initialized, saved, loaded back and run on one window.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tst_core.h"

/* Models larger than this are validated only, to keep each run fast. */
#define MAX_FUZZ_PARAMS 200000
#define MAX_FUZZ_CONTEXT 2048

static int32_t
take_i32(const uint8_t **p, size_t *left)
{
	int32_t		v = 0;

	if (*left >= 4)
	{
		memcpy(&v, *p, 4);
		*p += 4;
		*left -= 4;
	}
	return v;
}

static float
take_f32(const uint8_t **p, size_t *left)
{
	float		v = 0.0f;

	if (*left >= 4)
	{
		memcpy(&v, *p, 4);
		*p += 4;
		*left -= 4;
	}
	return v;
}

/* Run a valid configuration end to end. */
static void
exercise(const TstConfig *config)
{
	char		errmsg[TST_ERRMSG_LEN];
	TstModel   *model = NULL;
	size_t		size;
	uint8_t    *blob;
	double	   *x;
	double	   *out;

	if (tst_model_create(config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
		abort();
	tst_model_init(model, 1);
	if (tst_model_num_params(model) > MAX_FUZZ_PARAMS)
	{
		tst_model_free(model);
		return;
	}

	size = tst_model_saved_size(model);
	blob = malloc(size);
	tst_model_save(model, blob);
	if (tst_model_load(model, blob, size, errmsg) != TST_OK)
		abort();
	free(blob);

	x = malloc(sizeof(double) * config->context);
	out = malloc(sizeof(double) * config->horizon * config->n_quantiles);
	for (int32_t t = 0; t < config->context; t++)
		x[t] = sin(0.3 * t);
	if (tst_model_forecast(model, x, 1, out, errmsg) != TST_OK)
		abort();
	for (int32_t i = 0; i < config->horizon * config->n_quantiles; i++)
		if (!isfinite(out[i]))
			abort();
	free(x);
	free(out);
	tst_model_free(model);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	TstConfig	config;
	char		errmsg[TST_ERRMSG_LEN];
	const uint8_t *p = data;
	size_t		left = size;

	tst_config_default(&config);
	config.context = take_i32(&p, &left);
	config.horizon = take_i32(&p, &left);
	config.patch_len = take_i32(&p, &left);
	config.patch_stride = take_i32(&p, &left);
	config.d_model = take_i32(&p, &left);
	config.n_heads = take_i32(&p, &left);
	config.n_layers = take_i32(&p, &left);
	config.d_ff = take_i32(&p, &left);
	config.dropout = take_f32(&p, &left);
	config.attention = (TstAttentionKind) take_i32(&p, &left);
	config.window = take_i32(&p, &left);
	config.n_quantiles = take_i32(&p, &left);
	for (int q = 0; q < TST_MAX_QUANTILES; q++)
		config.quantiles[q] = take_f32(&p, &left);

	errmsg[0] = '\0';
	if (tst_config_validate(&config, errmsg) != TST_OK)
	{
		if (errmsg[0] == '\0' || memchr(errmsg, '\0', TST_ERRMSG_LEN) == NULL)
			abort();
		return 0;
	}
	if (config.context <= MAX_FUZZ_CONTEXT)
		exercise(&config);
	return 0;
}
