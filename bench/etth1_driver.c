/*
 * etth1_driver.c
 *		Train the engine on ETTh1 without PostgreSQL and score every
 *		validation and test window, for quick accuracy experiments.
 *
 * The driver reads ETTh1.csv and standardizes each column with the mean and
 * population standard deviation of the train rows [0, 8640). It trains one
 * model on rows [0, 11520) of OT (mode S) or of all seven columns (mode M)
 * with validation_fraction 0.25, so that the validation targets are rows
 * [8640, 11520) as in test/ett/etth1.sql and bench/ett. Then it forecasts
 * every validation origin (8640 to 11520 - H) and every test origin (11520
 * to 14400 - H). It prints the MSE and MAE of the median, and the coverage
 * and mean width of the 80% (0.1 to 0.9) and 95% (0.025 to 0.975)
 * intervals, all on standardized values.
 *
 * Build and run from the repository root (no -ffast-math):
 *   cc -std=gnu11 -O2 -Isrc/core $(pkg-config --cflags openblas) \
 *      -o /tmp/etth1_driver bench/etth1_driver.c $(find src/core -name '*.c') \
 *      $(pkg-config --libs openblas) -lm
 *   OPENBLAS_NUM_THREADS=2 /tmp/etth1_driver mode=S H=96 attention=dense
 *
 * Arguments are KEY=VALUE pairs: mode (S or M), csv (path, default
 * ../shared/data/ett/ETTh1.csv), the model fields context, horizon (or H),
 * patch_len, patch_stride, d_model, n_heads, n_layers, d_ff, dropout,
 * window and attention, and the training options epochs, batch_size,
 * learning_rate, weight_decay, patience, seed, max_seconds,
 * max_windows_per_epoch and warmup_fraction. The defaults are those of
 * docs/model.md with context 336 and horizon 96. With VERBOSE set in the
 * environment, every epoch is printed to stderr.
 */
#include "tst_core.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_COLUMNS 7
#define OT_COLUMN 6
#define USED_ROWS 14400			/* rows 14400 and later are never used */
#define TRAIN_END 8640
#define VALIDATION_END 11520

static double columns[N_COLUMNS][USED_ROWS];

/* Errors and interval coverage of a set of forecasts. */
typedef struct Scores
{
	double		mse;
	double		mae;
	double		coverage80;
	double		coverage95;
	double		width80;
	double		width95;
} Scores;

static void
fail(const char *message, const char *detail)
{
	fprintf(stderr, "etth1_driver: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* Read the first USED_ROWS rows and standardize every column. */
static void
load_csv(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[1024];
	int			rows = 0;

	if (f == NULL)
		fail("cannot open", path);
	if (fgets(line, sizeof(line), f) == NULL)
		fail("empty file", path);
	while (rows < USED_ROWS && fgets(line, sizeof(line), f) != NULL)
	{
		char	   *p = strchr(line, ',');

		if (p == NULL)
			fail("malformed line in", path);
		for (int c = 0; c < N_COLUMNS; c++)
			columns[c][rows] = strtod(p + 1, &p);
		rows++;
	}
	fclose(f);
	if (rows < USED_ROWS)
		fail("fewer than 14400 rows in", path);

	for (int c = 0; c < N_COLUMNS; c++)
	{
		double		mean = 0.0;
		double		squares = 0.0;
		double		sd;

		for (int i = 0; i < TRAIN_END; i++)
			mean += columns[c][i];
		mean /= TRAIN_END;
		for (int i = 0; i < TRAIN_END; i++)
			squares += (columns[c][i] - mean) * (columns[c][i] - mean);
		sd = sqrt(squares / TRAIN_END);
		for (int i = 0; i < USED_ROWS; i++)
			columns[c][i] = (columns[c][i] - mean) / sd;
	}
}

static void
print_epoch(void *ctx, const TstEpochStats *stats)
{
	(void) ctx;
	if (getenv("VERBOSE") != NULL)
		fprintf(stderr, "epoch %d: train loss %.5f, validation loss %.5f, %.1f s\n",
				stats->epoch, stats->train_loss, stats->validation_loss, stats->seconds);
}

/* Return the index of quantile level tau in the model, or -1. */
static int
find_level(const TstConfig *config, float tau)
{
	for (int q = 0; q < config->n_quantiles; q++)
		if (fabsf(config->quantiles[q] - tau) < 1e-6f)
			return q;
	return -1;
}

/* Forecast origins [first, last] of each used column and score them. */
static Scores
score_origins(TstModel *model, const int *used, int n_used, int first, int last)
{
	const TstConfig *config = tst_model_config(model);
	int			L = config->context;
	int			H = config->horizon;
	int			Q = config->n_quantiles;
	int			n = last - first + 1;
	int			median = find_level(config, 0.5f);
	int			q10 = find_level(config, 0.1f);
	int			q90 = find_level(config, 0.9f);
	int			q025 = find_level(config, 0.025f);
	int			q975 = find_level(config, 0.975f);
	double	   *x = malloc(sizeof(double) * (size_t) n * L);
	double	   *out = malloc(sizeof(double) * (size_t) n * H * Q);
	char		errmsg[TST_ERRMSG_LEN];
	Scores		s = {0};
	double		count = 0.0;

	if (x == NULL || out == NULL)
		fail("out of memory", NULL);
	if (median < 0 || q10 < 0 || q90 < 0 || q025 < 0 || q975 < 0)
		fail("the quantiles must contain 0.025, 0.1, 0.5, 0.9 and 0.975", NULL);
	for (int k = 0; k < n_used; k++)
	{
		const double *values = columns[used[k]];

		for (int i = 0; i < n; i++)
			memcpy(x + (size_t) i * L, values + first + i - L, sizeof(double) * L);
		if (tst_model_forecast(model, x, n, out, errmsg) != TST_OK)
			fail("tst_model_forecast failed", errmsg);
		for (int i = 0; i < n; i++)
			for (int h = 0; h < H; h++)
			{
				double		y = values[first + i + h];
				const double *o = out + ((size_t) i * H + h) * Q;
				double		error = o[median] - y;

				s.mse += error * error;
				s.mae += fabs(error);
				s.coverage80 += y >= o[q10] && y <= o[q90];
				s.coverage95 += y >= o[q025] && y <= o[q975];
				s.width80 += o[q90] - o[q10];
				s.width95 += o[q975] - o[q025];
				count += 1.0;
			}
	}
	s.mse /= count;
	s.mae /= count;
	s.coverage80 /= count;
	s.coverage95 /= count;
	s.width80 /= count;
	s.width95 /= count;
	free(x);
	free(out);
	return s;
}

/* Set one KEY=VALUE option; false when KEY is unknown. */
static bool
set_option(const char *key, const char *value, TstConfig *config,
		   TstTrainOptions *options)
{
	static const struct
	{
		const char *key;
		int			kind;		/* 0: int32 config, 1: float config, 2: int32 option, 3: double option */
		size_t		offset;
	}			table[] = {
		{"context", 0, offsetof(TstConfig, context)},
		{"horizon", 0, offsetof(TstConfig, horizon)},
		{"H", 0, offsetof(TstConfig, horizon)},
		{"patch_len", 0, offsetof(TstConfig, patch_len)},
		{"patch_stride", 0, offsetof(TstConfig, patch_stride)},
		{"d_model", 0, offsetof(TstConfig, d_model)},
		{"n_heads", 0, offsetof(TstConfig, n_heads)},
		{"n_layers", 0, offsetof(TstConfig, n_layers)},
		{"d_ff", 0, offsetof(TstConfig, d_ff)},
		{"window", 0, offsetof(TstConfig, window)},
		{"dropout", 1, offsetof(TstConfig, dropout)},
		{"epochs", 2, offsetof(TstTrainOptions, epochs)},
		{"batch_size", 2, offsetof(TstTrainOptions, batch_size)},
		{"patience", 2, offsetof(TstTrainOptions, patience)},
		{"learning_rate", 3, offsetof(TstTrainOptions, learning_rate)},
		{"weight_decay", 3, offsetof(TstTrainOptions, weight_decay)},
		{"max_seconds", 3, offsetof(TstTrainOptions, max_seconds)},
		{"warmup_fraction", 3, offsetof(TstTrainOptions, warmup_fraction)},
	};

	if (strcmp(key, "attention") == 0)
		return tst_attention_parse(value, &config->attention);
	if (strcmp(key, "seed") == 0)
	{
		options->seed = strtoull(value, NULL, 10);
		return true;
	}
	if (strcmp(key, "max_windows_per_epoch") == 0)
	{
		options->max_windows_per_epoch = strtoll(value, NULL, 10);
		return true;
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
	{
		char	   *base = table[i].kind < 2 ? (char *) config : (char *) options;
		void	   *field = base + table[i].offset;

		if (strcmp(key, table[i].key) != 0)
			continue;
		if (table[i].kind == 0 || table[i].kind == 2)
			*(int32_t *) field = (int32_t) atoi(value);
		else if (table[i].kind == 1)
			*(float *) field = (float) atof(value);
		else
			*(double *) field = atof(value);
		return true;
	}
	return false;
}

int
main(int argc, char **argv)
{
	TstConfig	config;
	TstTrainOptions options;
	TstTrainResult *result = calloc(1, sizeof(TstTrainResult));
	TstTrainCallbacks callbacks = {NULL, print_epoch, NULL};
	TstModel   *model = NULL;
	char		errmsg[TST_ERRMSG_LEN];
	const char *csv = "../shared/data/ett/ETTh1.csv";
	bool		mode_m = false;
	int			used[N_COLUMNS] = {OT_COLUMN};
	int			n_used = 1;
	const double *values[N_COLUMNS];
	int64_t		lengths[N_COLUMNS];
	TstSeriesSet set;
	Scores		validation;
	Scores		test;

	if (result == NULL)
		fail("out of memory", NULL);
	tst_config_default(&config);
	tst_train_options_default(&options);
	config.context = 336;
	config.horizon = 96;
	options.validation_fraction = 0.25;
	for (int i = 1; i < argc; i++)
	{
		const char *equals = strchr(argv[i], '=');
		char		key[64];

		if (equals == NULL || equals - argv[i] >= (long) sizeof(key))
			fail("expected KEY=VALUE, not", argv[i]);
		snprintf(key, sizeof(key), "%.*s", (int) (equals - argv[i]), argv[i]);
		if (strcmp(key, "mode") == 0)
			mode_m = equals[1] == 'M';
		else if (strcmp(key, "csv") == 0)
			csv = equals + 1;
		else if (!set_option(key, equals + 1, &config, &options))
			fail("unknown key or value in", argv[i]);
	}

	load_csv(csv);
	if (mode_m)
	{
		n_used = N_COLUMNS;
		for (int c = 0; c < N_COLUMNS; c++)
			used[c] = c;
	}
	for (int k = 0; k < n_used; k++)
	{
		values[k] = columns[used[k]];
		lengths[k] = VALIDATION_END;
	}
	set.n_series = n_used;
	set.values = values;
	set.lengths = lengths;

	if (tst_model_create(&config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
		fail("tst_model_create failed", errmsg);
	tst_model_init(model, options.seed);
	if (tst_train(model, &set, &options, &callbacks, result, errmsg) != TST_OK)
		fail("tst_train failed", errmsg);

	validation = score_origins(model, used, n_used, TRAIN_END, VALIDATION_END - config.horizon);
	test = score_origins(model, used, n_used, VALIDATION_END, USED_ROWS - config.horizon);
	printf("mode %s H %d: %lld parameters, %.1f s, %d epochs, best %d\n",
		   mode_m ? "M" : "S", config.horizon, (long long) tst_model_num_params(model),
		   result->seconds, result->epochs_run, result->best_epoch);
	printf("validation: MSE %.4f MAE %.4f, coverage 80%% %.3f 95%% %.3f\n",
		   validation.mse, validation.mae, validation.coverage80, validation.coverage95);
	printf("test: MSE %.4f MAE %.4f, coverage 80%% %.3f 95%% %.3f, width 80%% %.3f 95%% %.3f\n",
		   test.mse, test.mae, test.coverage80, test.coverage95, test.width80, test.width95);
	tst_model_free(model);
	free(result);
	return 0;
}
