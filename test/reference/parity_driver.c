/*
 * parity_driver.c
 *		Run one parity case through the C engine and write every result.
 *
 * Usage: parity_driver CASE_DIR
 *
 * CASE_DIR contains (written by parity.py):
 *   case.txt      "key value" lines: the configuration (context, horizon,
 *                 patch_len, patch_stride, d_model, n_heads, n_layers, d_ff,
 *                 attention, window, quantiles q1 q2 ...), the batch size
 *                 (batch), the number of AdamW steps (steps) and their
 *                 hyperparameters (learning_rate, beta1, beta2, eps,
 *                 weight_decay, max_norm)
 *   weights.tstw  the starting parameters, a weights blob
 *   x.f64         raw context windows (B, L), float64 little-endian
 *   y.f64         raw targets (B, H), float64 little-endian
 *
 * and the driver writes into it:
 *   xn.f32        normalized windows (B, L), from tst_normalize_window
 *   pred.f32      normalized predictions (B, H, Q) of the starting model
 *   forecast.f64  de-normalized sorted forecasts (B, H, Q), tst_model_forecast
 *   params_K.tstw the parameters before AdamW step K, for K = 0 .. steps
 *                 (params_0 is the loaded model, params_STEPS the final one)
 *   grads_K.tstw  the gradients that step K used, for K = 0 .. steps - 1,
 *                 in the weights blob layout
 *   pattern.txt   the attention pattern, one line per query token: its keys
 *                 in the engine's order, separated by spaces
 *   result.txt    one "step K LOSS GRAD_NORM" line per AdamW step: the loss
 *                 at params_K and the gradient norm before clipping
 *
 * Every step runs the forward pass with training false (no dropout) on the
 * same batch. The driver exits with status 1 and a message on stderr when
 * any engine call fails.
 */
#include "config_text.h"
#include "tst_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct CaseFile
{
	TstConfig	config;
	int32_t		batch;
	int32_t		steps;
	TstAdamW	hparams;
	float		max_norm;
} CaseFile;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "parity_driver: %s: %s\n", what, detail);
	exit(1);
}

static void
check_status(TstStatus status, const char *what, const char *errmsg)
{
	if (status != TST_OK)
		fail(what, errmsg);
}

static char *
join_path(const char *dir, const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

/* Read a whole file; the caller frees the result. */
static uint8_t *
read_file(const char *dir, const char *name, size_t *len)
{
	const char *path = join_path(dir, name);
	FILE	   *f = fopen(path, "rb");
	uint8_t    *data;
	long		size;

	if (f == NULL)
		fail("cannot open", path);
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		fail("cannot seek", path);
	data = malloc(size > 0 ? (size_t) size : 1);
	if (data == NULL)
		fail("out of memory reading", path);
	if (fread(data, 1, (size_t) size, f) != (size_t) size)
		fail("cannot read", path);
	fclose(f);
	*len = (size_t) size;
	return data;
}

static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	const char *path = join_path(dir, name);
	FILE	   *f = fopen(path, "wb");

	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		fail("cannot write", path);
}

/* Read count float64 values; parity.py writes them little-endian. */
static double *
read_doubles(const char *dir, const char *name, size_t count)
{
	size_t		len;
	uint8_t    *bytes = read_file(dir, name, &len);
	double	   *values = malloc(count * sizeof(double));

	if (len != count * sizeof(double))
		fail("unexpected file size", join_path(dir, name));
	if (values == NULL)
		fail("out of memory reading", name);
	for (size_t i = 0; i < count; i++)
	{
		uint64_t	bits = 0;

		for (int b = 7; b >= 0; b--)
			bits = (bits << 8) | bytes[8 * i + (size_t) b];
		memcpy(&values[i], &bits, sizeof(double));
	}
	free(bytes);
	return values;
}

/* Write count values of size bytes each, little-endian. */
static void
write_values(const char *dir, const char *name, const void *values,
			 size_t count, size_t size)
{
	uint8_t    *bytes = malloc(count * size + 1);

	if (bytes == NULL)
		fail("out of memory writing", name);
	for (size_t i = 0; i < count; i++)
	{
		uint64_t	bits = 0;

		memcpy(&bits, (const uint8_t *) values + i * size, size);
		for (size_t b = 0; b < size; b++)
			bytes[i * size + b] = (uint8_t) (bits >> (8 * b));
	}
	write_file(dir, name, bytes, count * size);
	free(bytes);
}

static void
parse_case(const char *dir, CaseFile *c)
{
	size_t		len;
	char	   *text = (char *) read_file(dir, "case.txt", &len);
	char	   *line;

	text = realloc(text, len + 1);
	if (text == NULL)
		fail("out of memory reading", "case.txt");
	text[len] = '\0';

	memset(c, 0, sizeof(*c));
	tst_config_default(&c->config);
	c->config.dropout = 0.0f;
	c->batch = 1;
	c->hparams.learning_rate = 1e-3f;
	c->hparams.beta1 = 0.9f;
	c->hparams.beta2 = 0.999f;
	c->hparams.eps = 1e-8f;

	for (line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
	{
		char		key[64];
		int			offset;
		TstConfig  *config = &c->config;
		ConfigTextResult result;

		if (sscanf(line, "%63s %n", key, &offset) != 1)
			continue;
		line += offset;
		result = config_text_set(config, key, line);
		if (result == CONFIG_TEXT_INVALID)
			fail("invalid value in case.txt", line);
		else if (result == CONFIG_TEXT_SET)
			continue;
		else if (strcmp(key, "batch") == 0)
			c->batch = atoi(line);
		else if (strcmp(key, "steps") == 0)
			c->steps = atoi(line);
		else if (strcmp(key, "learning_rate") == 0)
			c->hparams.learning_rate = strtof(line, NULL);
		else if (strcmp(key, "beta1") == 0)
			c->hparams.beta1 = strtof(line, NULL);
		else if (strcmp(key, "beta2") == 0)
			c->hparams.beta2 = strtof(line, NULL);
		else if (strcmp(key, "eps") == 0)
			c->hparams.eps = strtof(line, NULL);
		else if (strcmp(key, "weight_decay") == 0)
			c->hparams.weight_decay = strtof(line, NULL);
		else if (strcmp(key, "max_norm") == 0)
			c->max_norm = strtof(line, NULL);
		else
			fail("unknown key in case.txt", key);
	}
	free(text);
	if (c->batch < 1 || c->steps < 1)
		fail("invalid case.txt", "batch and steps must be at least 1");
}

static void
write_pattern(const char *dir, const TstConfig *config)
{
	TstPattern	pattern;
	char		errmsg[TST_ERRMSG_LEN] = "";
	FILE	   *f;

	check_status(tst_pattern_build(&pattern, config->attention, config->window,
								   tst_config_num_patches(config),
								   &tst_malloc_allocator, errmsg),
				 "tst_pattern_build", errmsg);
	f = fopen(join_path(dir, "pattern.txt"), "w");
	if (f == NULL)
		fail("cannot write", join_path(dir, "pattern.txt"));
	for (int32_t i = 0; i < pattern.n_tokens; i++)
	{
		for (int64_t k = pattern.rowptr[i]; k < pattern.rowptr[i + 1]; k++)
			fprintf(f, k > pattern.rowptr[i] ? " %d" : "%d", pattern.cols[k]);
		fputc('\n', f);
	}
	if (fclose(f) != 0)
		fail("cannot write", "pattern.txt");
	tst_pattern_free(&pattern, &tst_malloc_allocator);
}

static void
write_params(const char *dir, const char *name, TstModel *model)
{
	size_t		len = tst_model_saved_size(model);
	uint8_t    *blob = malloc(len);

	if (blob == NULL)
		fail("out of memory writing", name);
	tst_model_save(model, blob);
	write_file(dir, name, blob, len);
	free(blob);
}

/* Save the model's gradients as a blob, by copying them into a scratch model. */
static void
write_grads(const char *dir, const char *name, TstModel *model)
{
	TstModel   *scratch = NULL;
	char		errmsg[TST_ERRMSG_LEN] = "";

	check_status(tst_model_create(tst_model_config(model), &tst_malloc_allocator,
								  &scratch, errmsg), "tst_model_create", errmsg);
	for (int32_t i = 0; i < tst_model_num_tensors(model); i++)
	{
		TstTensor  *from = tst_model_tensor(model, i);
		TstTensor  *to = tst_model_tensor(scratch, i);

		memcpy(to->data, from->grad, sizeof(float) * (size_t) from->size);
	}
	write_params(dir, name, scratch);
	tst_model_free(scratch);
}

int
main(int argc, char **argv)
{
	const char *dir;
	CaseFile	c;
	char		errmsg[TST_ERRMSG_LEN] = "";
	TstModel   *model = NULL;
	TstOptimizer *optimizer = NULL;
	TstRng		rng;
	uint8_t    *blob;
	size_t		blob_len;
	double	   *x;
	double	   *y;
	float	   *xn;
	float	   *yn;
	float	   *pred;
	double	   *forecast;
	int32_t		B, L, H, Q;
	FILE	   *result;
	char		name[64];

	if (argc != 2)
	{
		fprintf(stderr, "usage: parity_driver CASE_DIR\n");
		return 2;
	}
	dir = argv[1];
	parse_case(dir, &c);
	check_status(tst_config_validate(&c.config, errmsg), "invalid configuration", errmsg);
	write_pattern(dir, &c.config);
	B = c.batch;
	L = c.config.context;
	H = c.config.horizon;
	Q = c.config.n_quantiles;

	check_status(tst_model_create(&c.config, &tst_malloc_allocator, &model, errmsg),
				 "tst_model_create", errmsg);
	blob = read_file(dir, "weights.tstw", &blob_len);
	check_status(tst_model_load(model, blob, blob_len, errmsg), "tst_model_load", errmsg);
	free(blob);

	x = read_doubles(dir, "x.f64", (size_t) B * L);
	y = read_doubles(dir, "y.f64", (size_t) B * H);
	xn = malloc(sizeof(float) * (size_t) B * L);
	yn = malloc(sizeof(float) * (size_t) B * H);
	pred = malloc(sizeof(float) * (size_t) B * H * Q);
	forecast = malloc(sizeof(double) * (size_t) B * H * Q);
	if (xn == NULL || yn == NULL || pred == NULL || forecast == NULL)
		fail("out of memory", "batch buffers");

	/* Targets are normalized with their own window's statistics. */
	for (int32_t b = 0; b < B; b++)
	{
		double		mean;
		double		scale;

		tst_normalize_window(x + (size_t) b * L, L, xn + (size_t) b * L, &mean, &scale);
		for (int32_t h = 0; h < H; h++)
			yn[(size_t) b * H + h] = (float) ((y[(size_t) b * H + h] - mean) / scale);
	}
	write_values(dir, "xn.f32", xn, (size_t) B * L, sizeof(float));

	check_status(tst_model_forecast(model, x, B, forecast, errmsg),
				 "tst_model_forecast", errmsg);
	write_values(dir, "forecast.f64", forecast, (size_t) B * H * Q, sizeof(double));

	check_status(tst_model_enable_grad(model, errmsg), "tst_model_enable_grad", errmsg);
	check_status(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg),
				 "tst_optimizer_create", errmsg);
	tst_rng_seed(&rng, 1);

	result = fopen(join_path(dir, "result.txt"), "w");
	if (result == NULL)
		fail("cannot write", join_path(dir, "result.txt"));

	for (int32_t step = 0; step < c.steps; step++)
	{
		float		loss;
		float		grad_norm;

		tst_model_zero_grad(model);
		check_status(tst_model_forward(model, xn, yn, B, false, &rng,
									   step == 0 ? pred : NULL, &loss, errmsg),
					 "tst_model_forward", errmsg);
		check_status(tst_model_backward(model, errmsg), "tst_model_backward", errmsg);
		if (step == 0)
			write_values(dir, "pred.f32", pred, (size_t) B * H * Q, sizeof(float));
		snprintf(name, sizeof(name), "params_%d.tstw", step);
		write_params(dir, name, model);
		snprintf(name, sizeof(name), "grads_%d.tstw", step);
		write_grads(dir, name, model);
		check_status(tst_optimizer_step(optimizer, &c.hparams, c.max_norm,
										&grad_norm, errmsg),
					 "tst_optimizer_step", errmsg);
		fprintf(result, "step %d %.9g %.9g\n", step, (double) loss, (double) grad_norm);
	}
	if (fclose(result) != 0)
		fail("cannot write", "result.txt");
	snprintf(name, sizeof(name), "params_%d.tstw", c.steps);
	write_params(dir, name, model);

	tst_optimizer_free(optimizer);
	tst_model_free(model);
	free(x);
	free(y);
	free(xn);
	free(yn);
	free(pred);
	free(forecast);
	return 0;
}
