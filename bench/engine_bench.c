/*
 * engine_bench.c
 *		Time the tst engine alone, for bench/engine.sh and the SQL benchmarks.
 *
 * Usage:
 *   engine_bench forecast DIR THREADS REPS [BATCH]
 *       tst_model_forecast on the windows x.f64 (B, L) of DIR, REPS times
 *       after one warm-up call; writes forecast.f64 (B, H, Q).
 *   engine_bench train DIR THREADS REPS BATCH
 *       REPS training steps (forward with dropout, backward, clipping and
 *       AdamW) on the first BATCH windows of x.f64 and targets y.f64.
 *   engine_bench sgemm THREADS REPS SIZE
 *       cblas_sgemm of SIZE x SIZE matrices, the machine's peak for this
 *       library and thread count.
 *   engine_bench attention KIND CONTEXT REPS
 *       forecast one window of CONTEXT steps with patch_len 1 (one token per
 *       step), d_model 32, 4 heads, 1 layer, window 16, H = 1, and KIND
 *       attention, from seeded weights, on one thread. An engine error is printed as
 *       "error MESSAGE" and the exit status is 3.
 *
 * DIR holds config.txt ("key value" lines: context, horizon, patch_len,
 * patch_stride, d_model, n_heads, n_layers, d_ff, attention, window,
 * dropout, quantiles q1 q2 ..., batch), weights.tstw, x.f64 and y.f64,
 * written by bench/engine_torch.py. Every timed call prints one line
 * "MODE SECONDS", and the last line is "peak_rss_kb N".
 */
#include "../test/reference/config_text.h"
#include "tst_core.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct BenchCase
{
	TstConfig	config;
	int32_t		batch;
} BenchCase;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "engine_bench: %s: %s\n", what, detail);
	exit(1);
}

static void
check(TstStatus status, const char *what, const char *errmsg)
{
	if (status != TST_OK)
		fail(what, errmsg);
}

static void *
read_file(const char *dir, const char *name, size_t *len)
{
	char		path[4096];
	FILE	   *f;
	void	   *data;
	long		size;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail("cannot open", path);
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		fail("cannot seek", path);
	data = malloc((size_t) size + 1);
	if (data == NULL || fread(data, 1, (size_t) size, f) != (size_t) size)
		fail("cannot read", path);
	fclose(f);
	((char *) data)[size] = '\0';
	*len = (size_t) size;
	return data;
}

static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		fail("cannot write", path);
}

/* Read config.txt; the bench only runs on little-endian machines. */
static void
read_case(const char *dir, BenchCase *c)
{
	size_t		len;
	char	   *text = read_file(dir, "config.txt", &len);
	TstConfig  *config = &c->config;

	tst_config_default(config);
	c->batch = 1;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
	{
		char		key[64];
		int			offset;
		ConfigTextResult result;

		if (sscanf(line, "%63s %n", key, &offset) != 1)
			continue;
		line += offset;
		result = config_text_set(config, key, line);
		if (result == CONFIG_TEXT_INVALID)
			fail("invalid value in config.txt", line);
		else if (result == CONFIG_TEXT_SET)
			continue;
		else if (strcmp(key, "batch") == 0)
			c->batch = atoi(line);
		else
			fail("unknown key in config.txt", key);
	}
	free(text);
}

static TstModel *
load_model(const char *dir, const BenchCase *c)
{
	char		errmsg[TST_ERRMSG_LEN] = "";
	TstModel   *model = NULL;
	size_t		len;
	void	   *blob;

	check(tst_config_validate(&c->config, errmsg), "invalid configuration", errmsg);
	check(tst_model_create(&c->config, &tst_malloc_allocator, &model, errmsg),
		  "tst_model_create", errmsg);
	blob = read_file(dir, "weights.tstw", &len);
	check(tst_model_load(model, blob, len, errmsg), "tst_model_load", errmsg);
	free(blob);
	return model;
}

static double *
read_doubles(const char *dir, const char *name, size_t count)
{
	size_t		len;
	double	   *values = read_file(dir, name, &len);

	if (len < count * sizeof(double))
		fail("file too short", name);
	return values;
}

static void
bench_forecast(const char *dir, int reps, int32_t batch)
{
	BenchCase	c;
	TstModel   *model;
	double	   *x;
	double	   *out;
	size_t		n_out;
	char		errmsg[TST_ERRMSG_LEN] = "";

	read_case(dir, &c);
	if (batch <= 0)
		batch = c.batch;
	model = load_model(dir, &c);
	x = read_doubles(dir, "x.f64", (size_t) batch * c.config.context);
	n_out = (size_t) batch * c.config.horizon * c.config.n_quantiles;
	out = malloc(n_out * sizeof(double));
	if (out == NULL)
		fail("out of memory", "forecast output");

	/* The first call plans the activations; it is not timed. */
	check(tst_model_forecast(model, x, batch, out, errmsg), "tst_model_forecast", errmsg);
	for (int r = 0; r < reps; r++)
	{
		double		start = tst_now_seconds();

		check(tst_model_forecast(model, x, batch, out, errmsg), "tst_model_forecast", errmsg);
		printf("forecast %.6f\n", tst_now_seconds() - start);
	}
	write_file(dir, "forecast.f64", out, n_out * sizeof(double));
	free(out);
	free(x);
	tst_model_free(model);
}

static void
bench_train(const char *dir, int reps, int32_t batch)
{
	BenchCase	c;
	TstModel   *model;
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
	TstRng		rng;
	double	   *x;
	double	   *y;
	float	   *xn;
	float	   *yn;
	int32_t		L;
	int32_t		H;
	char		errmsg[TST_ERRMSG_LEN] = "";

	read_case(dir, &c);
	L = c.config.context;
	H = c.config.horizon;
	model = load_model(dir, &c);
	x = read_doubles(dir, "x.f64", (size_t) batch * L);
	y = read_doubles(dir, "y.f64", (size_t) batch * H);
	xn = malloc(sizeof(float) * (size_t) batch * L);
	yn = malloc(sizeof(float) * (size_t) batch * H);
	if (xn == NULL || yn == NULL)
		fail("out of memory", "batch buffers");
	for (int32_t b = 0; b < batch; b++)
	{
		double		mean;
		double		scale;

		tst_normalize_window(x + (size_t) b * L, L, xn + (size_t) b * L, &mean, &scale);
		for (int32_t h = 0; h < H; h++)
			yn[(size_t) b * H + h] = (float) ((y[(size_t) b * H + h] - mean) / scale);
	}
	check(tst_model_enable_grad(model, errmsg), "tst_model_enable_grad", errmsg);
	check(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg),
		  "tst_optimizer_create", errmsg);
	tst_rng_seed(&rng, 1);

	/* Step 0 plans the activations and gradients; it is not timed. */
	for (int r = 0; r <= reps; r++)
	{
		double		start = tst_now_seconds();
		float		loss;
		float		norm;

		tst_model_zero_grad(model);
		check(tst_model_forward(model, xn, yn, batch, true, &rng, NULL, &loss, errmsg),
			  "tst_model_forward", errmsg);
		check(tst_model_backward(model, errmsg), "tst_model_backward", errmsg);
		check(tst_optimizer_step(optimizer, &hparams, 1.0f, &norm, errmsg),
			  "tst_optimizer_step", errmsg);
		if (r > 0)
			printf("train %.6f\n", tst_now_seconds() - start);
	}
	tst_optimizer_free(optimizer);
	tst_model_free(model);
	free(x);
	free(y);
	free(xn);
	free(yn);
}

static void
bench_sgemm(int reps, int size)
{
	size_t		n = (size_t) size * size;
	float	   *a = malloc(n * sizeof(float));
	float	   *b = malloc(n * sizeof(float));
	float	   *c = malloc(n * sizeof(float));

	if (a == NULL || b == NULL || c == NULL)
		fail("out of memory", "sgemm matrices");
	for (size_t i = 0; i < n; i++)
	{
		a[i] = (float) (i % 7) * 0.1f;
		b[i] = (float) (i % 5) * 0.1f;
	}
	for (int r = 0; r <= reps; r++)
	{
		double		start = tst_now_seconds();

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size,
					1.0f, a, size, b, size, 0.0f, c, size);
		if (r > 0)
			printf("sgemm %.6f\n", tst_now_seconds() - start);
	}
	free(a);
	free(b);
	free(c);
}

static void
bench_attention(const char *kind, int32_t context, int reps)
{
	TstConfig	config;
	TstModel   *model = NULL;
	TstStatus	status;
	double	   *x;
	double		out[TST_MAX_QUANTILES];
	char		errmsg[TST_ERRMSG_LEN] = "";

	tst_config_default(&config);
	config.context = context;
	config.horizon = 1;
	config.patch_len = 1;
	config.patch_stride = 1;
	config.d_model = 32;
	config.n_heads = 4;
	config.n_layers = 1;
	config.d_ff = 64;
	config.window = 16;
	if (!tst_attention_parse(kind, &config.attention))
		fail("unknown attention kind", kind);
	status = tst_config_validate(&config, errmsg);
	if (status == TST_OK)
		status = tst_model_create(&config, &tst_malloc_allocator, &model, errmsg);
	if (status != TST_OK)
	{
		printf("error %s\n", errmsg);
		exit(3);
	}
	tst_model_init(model, 1);
	x = malloc(sizeof(double) * (size_t) context);
	if (x == NULL)
		fail("out of memory", "window");
	for (int32_t t = 0; t < context; t++)
		x[t] = (double) (t % 24) + 0.01 * (double) (t % 7);
	for (int r = 0; r <= reps; r++)
	{
		double		start = tst_now_seconds();

		status = tst_model_forecast(model, x, 1, out, errmsg);
		if (status != TST_OK)
		{
			printf("error %s\n", errmsg);
			exit(3);
		}
		if (r > 0)
			printf("forecast %.6f\n", tst_now_seconds() - start);
	}
	free(x);
	tst_model_free(model);
}

int
main(int argc, char **argv)
{
	struct rusage usage;

	if (argc >= 5 && strcmp(argv[1], "forecast") == 0)
	{
		openblas_set_num_threads(atoi(argv[3]));
		bench_forecast(argv[2], atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 0);
	}
	else if (argc == 6 && strcmp(argv[1], "train") == 0)
	{
		openblas_set_num_threads(atoi(argv[3]));
		bench_train(argv[2], atoi(argv[4]), atoi(argv[5]));
	}
	else if (argc == 5 && strcmp(argv[1], "attention") == 0)
	{
		openblas_set_num_threads(1);
		bench_attention(argv[2], atoi(argv[3]), atoi(argv[4]));
	}
	else if (argc == 5 && strcmp(argv[1], "sgemm") == 0)
	{
		openblas_set_num_threads(atoi(argv[2]));
		bench_sgemm(atoi(argv[3]), atoi(argv[4]));
	}
	else
	{
		fprintf(stderr, "usage: engine_bench forecast DIR THREADS REPS [BATCH]\n"
				"       engine_bench train DIR THREADS REPS BATCH\n"
				"       engine_bench sgemm THREADS REPS SIZE\n"
				"       engine_bench attention KIND CONTEXT REPS\n");
		return 2;
	}
	getrusage(RUSAGE_SELF, &usage);
	printf("peak_rss_kb %ld\n", usage.ru_maxrss);
	return 0;
}
