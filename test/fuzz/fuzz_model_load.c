/*
 * fuzz_model_load.c
 *		libFuzzer target for tst_model_load.
 *
 * The first input byte chooses one of a few small configurations; the rest
 * is the weights blob. A blob that loads must give finite forecasts or a
 * TST_ERR_NUMERIC error, and a blob that fails to load must leave the
 * parameters unchanged.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tst_core.h"

#define N_CONFIGS 4

static void
choose_config(int index, TstConfig *config)
{
	tst_config_default(config);
	config->context = 16;
	config->horizon = 4;
	config->patch_len = 4;
	config->patch_stride = 4;
	config->d_model = 8;
	config->n_heads = 2;
	config->n_layers = 1;
	config->d_ff = 8;
	config->window = 2;
	switch (index)
	{
		case 1:
			config->n_layers = 2;
			config->attention = TST_ATTENTION_LOGSPARSE;
			break;
		case 2:
			config->attention = TST_ATTENTION_DENSE;
			config->n_quantiles = 1;
			config->quantiles[0] = 0.5f;
			break;
		case 3:
			config->patch_stride = 2;
			config->d_model = 4;
			config->n_heads = 1;
			break;
		default:
			break;
	}
}

static TstModel *models[N_CONFIGS];
static uint8_t *initial[N_CONFIGS];
static size_t initial_size[N_CONFIGS];

/* Create each model once, with its initial weights saved for comparison. */
static TstModel *
model_for(int index)
{
	char		errmsg[TST_ERRMSG_LEN];
	TstConfig	config;

	if (models[index] == NULL)
	{
		choose_config(index, &config);
		if (tst_model_create(&config, &tst_malloc_allocator, &models[index], errmsg) != TST_OK)
			abort();
		tst_model_init(models[index], 7);
		initial_size[index] = tst_model_saved_size(models[index]);
		initial[index] = malloc(initial_size[index]);
		tst_model_save(models[index], initial[index]);
	}
	return models[index];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		errmsg[TST_ERRMSG_LEN];
	int			index;
	TstModel   *model;
	uint8_t    *blob;
	uint8_t    *after;
	size_t		saved;

	if (size < 1)
		return 0;
	index = data[0] % N_CONFIGS;
	model = model_for(index);

	/* Copy to an exact-size buffer, so that any overread hits the redzone. */
	blob = malloc(size - 1 > 0 ? size - 1 : 1);
	memcpy(blob, data + 1, size - 1);
	errmsg[0] = '\0';
	if (tst_model_load(model, blob, size - 1, errmsg) == TST_OK)
	{
		const TstConfig *config = tst_model_config(model);
		double		x[16];
		double		out[4 * TST_MAX_QUANTILES];

		for (int t = 0; t < config->context; t++)
			x[t] = cos(0.5 * t);
		TstStatus	status = tst_model_forecast(model, x, 1, out, errmsg);

		/* Finite weights may overflow, which must be reported, not returned. */
		if (status == TST_ERR_NUMERIC && errmsg[0] == '\0')
			abort();
		if (status != TST_OK && status != TST_ERR_NUMERIC)
			abort();
		for (int i = 0; status == TST_OK && i < config->horizon * config->n_quantiles; i++)
			if (!isfinite(out[i]))
				abort();
		/* Restore the initial weights for the next input. */
		if (tst_model_load(model, initial[index], initial_size[index], errmsg) != TST_OK)
			abort();
	}
	else
	{
		if (errmsg[0] == '\0')
			abort();
		saved = tst_model_saved_size(model);
		after = malloc(saved);
		tst_model_save(model, after);
		if (saved != initial_size[index] || memcmp(after, initial[index], saved) != 0)
			abort();
		free(after);
	}
	free(blob);
	return 0;
}
