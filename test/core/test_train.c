/*
 * test_train.c
 *		Tests of the training loop: schedule, window split, learning a sine
 *		wave, reproducibility, early stopping, callbacks and every rejection.
 */
#include "harness.h"
#include "tst_core.h"

#include <stdlib.h>
#include <string.h>

/* Defined in train.c for these tests; not part of the public API. */
double		tst_train_learning_rate(double base_rate, double warmup_fraction,
									int64_t step, int64_t total_steps);

#define TEST_PI 3.14159265358979323846
#define MAX_TEST_SERIES 4

/* A set of owned series, with the arrays TstSeriesSet points into. */
typedef struct TestSeries
{
	int32_t		n_series;
	double	   *values[MAX_TEST_SERIES];
	int64_t		lengths[MAX_TEST_SERIES];
	TstSeriesSet set;
} TestSeries;

/* Noiseless sine waves: series s has period 16 + 4 s and its own level. */
static void
make_sines(TestSeries *series, int32_t n_series, int64_t length)
{
	memset(series, 0, sizeof(*series));
	series->n_series = n_series;
	for (int32_t s = 0; s < n_series; s++)
	{
		double		period = 16.0 + 4.0 * s;

		series->values[s] = malloc((size_t) length * sizeof(double));
		series->lengths[s] = length;
		for (int64_t t = 0; t < length; t++)
			series->values[s][t] = 10.0 * s + (1.0 + s) * sin(2.0 * TEST_PI * (double) t / period + s);
	}
	series->set.n_series = n_series;
	series->set.values = (const double *const *) series->values;
	series->set.lengths = series->lengths;
}

static void
free_series(TestSeries *series)
{
	for (int32_t s = 0; s < series->n_series; s++)
		free(series->values[s]);
}

/* A model small enough to train for dozens of epochs in well under a second. */
static TstConfig
small_config(void)
{
	TstConfig	config;

	tst_config_default(&config);
	config.context = 32;
	config.horizon = 8;
	config.patch_len = 8;
	config.patch_stride = 4;
	config.d_model = 16;
	config.n_heads = 2;
	config.n_layers = 1;
	config.d_ff = 32;
	config.dropout = 0.0f;
	config.window = 4;
	return config;
}

static TstModel *
make_model(const TstConfig *config, uint64_t seed)
{
	TstModel   *model = NULL;
	char		errmsg[TST_ERRMSG_LEN] = "";

	if (tst_model_create(config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
	{
		printf("    model creation failed: %s\n", errmsg);
		return NULL;
	}
	tst_model_init(model, seed);
	return model;
}

/* Whether two models with one configuration hold bit-identical parameters. */
static bool
same_parameters(TstModel *a, TstModel *b)
{
	for (int32_t t = 0; t < tst_model_num_tensors(a); t++)
	{
		TstTensor  *ta = tst_model_tensor(a, t);
		TstTensor  *tb = tst_model_tensor(b, t);

		if (memcmp(ta->data, tb->data, (size_t) ta->size * sizeof(float)) != 0)
			return false;
	}
	return true;
}

/*
 * Collect the validation windows of docs/model.md: the last
 * v = max(H, round(f n)) points of each series are held out, and a window
 * is kept when all its targets lie in them. Returns the count; series and
 * offsets receive at most max_windows entries.
 */
static int64_t
validation_windows(const TstSeriesSet *set, int32_t L, int32_t H, double fraction,
				   int32_t *series, int64_t *offsets, int64_t max_windows)
{
	int64_t		count = 0;

	for (int32_t s = 0; s < set->n_series; s++)
	{
		int64_t		n = set->lengths[s];
		int64_t		v = llround(fraction * (double) n);

		if (v < H)
			v = H;
		for (int64_t o = 0; o + L + H <= n; o++)
		{
			if (o + L < n - v)
				continue;
			if (count < max_windows)
			{
				series[count] = s;
				offsets[count] = o;
			}
			count++;
		}
	}
	return count;
}

/*
 * Mean pinball loss, on normalized targets, of forecasting every quantile of
 * every step as the last context value.
 */
static double
repeat_last_loss(const TstSeriesSet *set, const TstConfig *config, double fraction)
{
	int32_t		L = config->context;
	int32_t		H = config->horizon;
	int32_t		series[4096];
	int64_t		offsets[4096];
	int64_t		count = validation_windows(set, L, H, fraction, series, offsets, 4096);
	float	   *xn = malloc((size_t) L * sizeof(float));
	double		sum = 0.0;

	for (int64_t w = 0; w < count; w++)
	{
		const double *x = set->values[series[w]] + offsets[w];
		double		mean;
		double		scale;

		tst_normalize_window(x, L, xn, &mean, &scale);
		for (int32_t h = 0; h < H; h++)
		{
			double		u = (x[L + h] - mean) / scale - xn[L - 1];

			for (int32_t q = 0; q < config->n_quantiles; q++)
			{
				double		tau = config->quantiles[q];

				sum += fmax(tau * u, (tau - 1.0) * u);
			}
		}
	}
	free(xn);
	return sum / ((double) count * H * config->n_quantiles);
}

/* Mean validation loss of a model, by forward passes in batches of 64. */
static double
model_validation_loss(TstModel *model, const TstSeriesSet *set, double fraction)
{
	const TstConfig *config = tst_model_config(model);
	int32_t		L = config->context;
	int32_t		H = config->horizon;
	int32_t		series[4096];
	int64_t		offsets[4096];
	int64_t		count = validation_windows(set, L, H, fraction, series, offsets, 4096);
	float	   *xn = malloc((size_t) 64 * L * sizeof(float));
	float	   *yn = malloc((size_t) 64 * H * sizeof(float));
	char		errmsg[TST_ERRMSG_LEN] = "";
	double		sum = 0.0;

	for (int64_t first = 0; first < count; first += 64)
	{
		int32_t		batch = (int32_t) (count - first < 64 ? count - first : 64);
		float		loss = 0.0f;

		for (int32_t b = 0; b < batch; b++)
		{
			const double *x = set->values[series[first + b]] + offsets[first + b];
			double		mean;
			double		scale;

			tst_normalize_window(x, L, xn + (int64_t) b * L, &mean, &scale);
			for (int32_t h = 0; h < H; h++)
				yn[b * H + h] = (float) ((x[L + h] - mean) / scale);
		}
		if (tst_model_forward(model, xn, yn, batch, false, NULL, NULL, &loss, errmsg) != TST_OK)
			printf("    forward failed: %s\n", errmsg);
		sum += (double) loss * batch;
	}
	free(xn);
	free(yn);
	return sum / (double) count;
}

/* Records of the callbacks. */
typedef struct CallbackLog
{
	int			interrupt_calls;
	int			cancel_at_call;	/* return true on this call; 0 never */
	int			epochs_reported;
	int			last_epoch;
	bool		epochs_in_order;
	double		validation_loss[64];
} CallbackLog;

static bool
log_interrupt(void *ctx)
{
	CallbackLog *log = ctx;

	log->interrupt_calls++;
	return log->cancel_at_call > 0 && log->interrupt_calls >= log->cancel_at_call;
}

static void
log_epoch(void *ctx, const TstEpochStats *stats)
{
	CallbackLog *log = ctx;

	if (stats->epoch != log->last_epoch + 1)
		log->epochs_in_order = false;
	log->last_epoch = stats->epoch;
	if (log->epochs_reported < 64)
		log->validation_loss[log->epochs_reported] = stats->validation_loss;
	log->epochs_reported++;
}

static TstTrainCallbacks
logging_callbacks(CallbackLog *log)
{
	TstTrainCallbacks callbacks;

	memset(log, 0, sizeof(*log));
	log->epochs_in_order = true;
	callbacks.check_interrupt = log_interrupt;
	callbacks.on_epoch = log_epoch;
	callbacks.ctx = log;
	return callbacks;
}

/* Allocate a result on the heap, because its history is too large for the stack. */
static TstTrainResult *
new_result(void)
{
	return calloc(1, sizeof(TstTrainResult));
}

/* Warm-up to the base rate, then a cosine down to 10% at the last step. */
TEST(schedule_known_steps)
{
	/* 100 steps with 5% warm-up: 5 warm-up steps, cosine over steps 5..99. */
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 0, 100), 0.2, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 2, 100), 0.6, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 4, 100), 1.0, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 5, 100), 1.0, 1e-12);
	/* Step 52 is halfway through the 94-step cosine: 0.1 + 0.9 * 0.5. */
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 52, 100), 0.55, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(1.0, 0.05, 99, 100), 0.1, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(2e-3, 0.05, 99, 100), 2e-4, 1e-12);

	/* Without warm-up the first step runs at the base rate. */
	CHECK_CLOSE(tst_train_learning_rate(1e-3, 0.0, 0, 10), 1e-3, 1e-12);
	CHECK_CLOSE(tst_train_learning_rate(1e-3, 0.0, 9, 10), 1e-4, 1e-12);

	/* A single step has no room to decay. */
	CHECK_CLOSE(tst_train_learning_rate(1e-3, 0.05, 0, 1), 1e-3, 1e-12);

	/* The rate never rises after warm-up. */
	for (int64_t step = 6; step < 100; step++)
		CHECK(tst_train_learning_rate(1.0, 0.05, step, 100) <=
			  tst_train_learning_rate(1.0, 0.05, step - 1, 100));
}

/* The defaults match docs/model.md, "Training". */
TEST(options_defaults)
{
	TstTrainOptions options;

	tst_train_options_default(&options);
	CHECK(options.epochs == 30);
	CHECK(options.batch_size == 64);
	CHECK(options.learning_rate == 1e-3);
	CHECK(options.weight_decay == 0.01);
	CHECK(options.validation_fraction == 0.1);
	CHECK(options.patience == 5);
	CHECK(options.seed == 42);
	CHECK(options.max_seconds == 0.0);
	CHECK(options.clip_norm == 1.0);
	CHECK(options.warmup_fraction == 0.05);
	CHECK(options.max_windows_per_epoch == 0);
	CHECK(options.allocator == NULL);
}

/* Window counts for one series of 100 points, L = 32, H = 8. */
TEST(window_split_counts)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 100);
	tst_train_options_default(&options);
	options.epochs = 1;

	/* v = max(8, round(0.2 * 100)) = 20: 100 - 20 - 40 + 1 training windows. */
	options.validation_fraction = 0.2;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(result->train_windows == 41);
	/* Offsets 48 .. 60 have every target at index 80 or later. */
	CHECK(result->validation_windows == 13);

	/* v = max(8, round(0.01 * 100)) = H: exactly one validation window. */
	options.validation_fraction = 0.01;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(result->train_windows == 53);
	CHECK(result->validation_windows == 1);

	options.validation_fraction = 0.0;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(result->train_windows == 61);
	CHECK(result->validation_windows == 0);
	CHECK(result->epochs_run == 1);
	CHECK(result->best_epoch == 1);
	CHECK(isnan(result->validation_loss[0]));

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/*
 * On noiseless sines the trained model's validation loss ends far below the
 * repeat-last baseline.
 */
TEST(sine_beats_repeat_last)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 3);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";
	double		baseline;
	double		trained;

	make_sines(&series, 3, 300);
	tst_train_options_default(&options);
	options.epochs = 30;
	options.batch_size = 32;
	options.learning_rate = 3e-3;
	options.validation_fraction = 0.2;
	options.patience = 30;

	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	if (errmsg[0] != '\0')
		printf("    %s\n", errmsg);
	baseline = repeat_last_loss(&series.set, &config, options.validation_fraction);
	trained = model_validation_loss(model, &series.set, options.validation_fraction);
	printf("    repeat-last loss %.4f, first epoch %.4f, trained %.4f after %d epochs\n",
		   baseline, result->validation_loss[0], trained, result->epochs_run);
	CHECK(result->epochs_run == 30);
	CHECK(result->best_epoch >= 1);
	CHECK(trained < 0.25 * baseline);
	CHECK(result->train_loss[result->epochs_run - 1] < result->train_loss[0]);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* Train one model from init seed 5 with the given training seed and dropout. */
static TstModel *
train_with_seed(uint64_t seed, const TestSeries *series)
{
	TstConfig	config = small_config();
	TstModel   *model;
	TstTrainResult *result = new_result();
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";

	config.dropout = 0.1f;
	model = make_model(&config, 5);
	tst_train_options_default(&options);
	options.epochs = 3;
	options.batch_size = 16;
	options.seed = seed;
	if (model != NULL &&
		tst_train(model, &series->set, &options, NULL, result, errmsg) != TST_OK)
		printf("    training failed: %s\n", errmsg);
	free(result);
	return model;
}

/* Same seed gives bit-identical weights; another seed gives others. */
TEST(seed_reproducible)
{
	TestSeries	series;
	TstModel   *a;
	TstModel   *b;
	TstModel   *c;

	make_sines(&series, 2, 200);
	a = train_with_seed(11, &series);
	b = train_with_seed(11, &series);
	c = train_with_seed(12, &series);
	CHECK(a != NULL);
	CHECK(b != NULL);
	CHECK(c != NULL);
	if (a != NULL && b != NULL && c != NULL)
	{
		CHECK(same_parameters(a, b));
		CHECK(!same_parameters(a, c));
	}
	tst_model_free(a);
	tst_model_free(b);
	tst_model_free(c);
	free_series(&series);
}

/*
 * A learning rate far too high makes the validation loss wander, so patience
 * 2 stops the run; the returned model must be the best epoch's.
 */
TEST(early_stopping_restores_best)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 9);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	TstTrainCallbacks callbacks;
	CallbackLog log;
	char		errmsg[TST_ERRMSG_LEN] = "";
	double		returned;
	double		best;
	double		last;

	make_sines(&series, 2, 200);
	tst_train_options_default(&options);
	options.epochs = 40;
	options.batch_size = 16;
	options.learning_rate = 0.3;
	options.warmup_fraction = 0.0;
	options.validation_fraction = 0.2;
	options.patience = 2;
	callbacks = logging_callbacks(&log);

	CHECK(tst_train(model, &series.set, &options, &callbacks, result, errmsg) == TST_OK);
	if (errmsg[0] != '\0')
		printf("    %s\n", errmsg);
	printf("    stopped after %d epochs, best epoch %d\n", result->epochs_run, result->best_epoch);
	CHECK(result->epochs_run < options.epochs);
	CHECK(result->best_epoch >= 1);
	CHECK(result->best_epoch == result->epochs_run - options.patience);
	CHECK(result->n_history == result->epochs_run);
	CHECK(log.epochs_reported == result->epochs_run);
	CHECK(log.epochs_in_order);
	if (result->best_epoch < 1 || result->epochs_run < 1)
		goto done;

	best = result->validation_loss[result->best_epoch - 1];
	last = result->validation_loss[result->epochs_run - 1];
	for (int32_t e = 0; e < result->epochs_run; e++)
	{
		CHECK(result->validation_loss[e] >= best);
		CHECK(log.validation_loss[e] == result->validation_loss[e]);
	}

	/* The model contains the best epoch's parameters, not the last epoch's. */
	returned = model_validation_loss(model, &series.set, options.validation_fraction);
	CHECK_CLOSE(returned, best, 1e-5);
	CHECK(fabs(returned - last) > 1e-4 * fabs(last));

done:
	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* check_interrupt returning true cancels before the next batch. */
TEST(interrupt_cancels)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	TstTrainCallbacks callbacks;
	CallbackLog log;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 200);
	tst_train_options_default(&options);
	options.batch_size = 8;
	callbacks = logging_callbacks(&log);
	log.cancel_at_call = 3;

	CHECK(tst_train(model, &series.set, &options, &callbacks, result, errmsg) == TST_ERR_CANCELLED);
	CHECK(log.interrupt_calls == 3);
	CHECK(log.epochs_reported == 0);
	CHECK(strstr(errmsg, "cancel") != NULL);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* max_windows_per_epoch caps the batches: 10 windows in batches of 4. */
TEST(window_cap_limits_batches)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	TstTrainCallbacks callbacks;
	CallbackLog log;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 200);
	tst_train_options_default(&options);
	options.epochs = 2;
	options.batch_size = 4;
	options.validation_fraction = 0.0;
	options.max_windows_per_epoch = 10;
	callbacks = logging_callbacks(&log);

	CHECK(tst_train(model, &series.set, &options, &callbacks, result, errmsg) == TST_OK);
	CHECK(log.interrupt_calls == 2 * 3);
	CHECK(result->train_windows == 161);
	CHECK(result->epochs_run == 2);
	CHECK(log.epochs_reported == 2);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* max_seconds stops between batches, after at least one step. */
TEST(time_limit_stops)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	TstTrainCallbacks callbacks;
	CallbackLog log;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 200);
	tst_train_options_default(&options);
	options.batch_size = 8;
	options.max_seconds = 1e-9;
	callbacks = logging_callbacks(&log);

	CHECK(tst_train(model, &series.set, &options, &callbacks, result, errmsg) == TST_OK);
	CHECK(result->epochs_run == 0);
	CHECK(result->best_epoch == 0);
	/* Before the first and second batches, then per calibration batch of 8. */
	CHECK(log.interrupt_calls == 2 + (result->validation_windows + 7) / 8);
	CHECK(log.epochs_reported == 0);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/*
 * Calibration: with validation, every validation window is scored, and the
 * calibrated 80% and 95% intervals of tst_model_forecast cover at least that
 * share of the validation targets and at most 2 windows' worth more (the
 * split-conformal quantile is taken on those same windows). Without
 * validation, every offset is 0.
 */
TEST(calibration_covers_validation)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 4);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	TstRng		rng;
	char		errmsg[TST_ERRMSG_LEN] = "";
	int32_t		L = config.context;
	int32_t		H = config.horizon;
	int32_t		Q = config.n_quantiles;
	int32_t		series_index[4096];
	int64_t		offsets[4096];
	int64_t		count;
	double	   *x;
	double	   *out;
	int64_t		inside80 = 0;
	int64_t		inside95 = 0;
	float		calibration[8 * 5];

	/* Noisy sines, so that the raw intervals are not exact. */
	make_sines(&series, 2, 300);
	tst_rng_seed(&rng, 11);
	for (int32_t s = 0; s < 2; s++)
		for (int64_t t = 0; t < 300; t++)
			series.values[s][t] += 0.5 * (tst_rng_uniform(&rng) - 0.5);
	tst_train_options_default(&options);
	options.epochs = 3;
	options.batch_size = 16;
	options.validation_fraction = 0.3;

	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(result->calibration_windows == result->validation_windows);
	count = validation_windows(&series.set, L, H, options.validation_fraction,
							   series_index, offsets, 4096);
	CHECK(count == result->validation_windows);
	x = malloc(sizeof(double) * (size_t) (count * L));
	out = malloc(sizeof(double) * (size_t) (count * H * Q));
	for (int64_t w = 0; w < count; w++)
		memcpy(x + w * L, series.values[series_index[w]] + offsets[w], sizeof(double) * L);
	CHECK(tst_model_forecast(model, x, (int32_t) count, out, errmsg) == TST_OK);

	/*
	 * Check the split-conformal offsets on the raw forecasts (offsets set to
	 * 0): per step, the raw interval of each pair widened by its offset covers
	 * k = ceil(0.8 (n + 1)) or ceil(0.95 (n + 1)) of the n validation
	 * targets, up to ties and the float32 rounding of the scores.
	 */
	memcpy(calibration, tst_model_calibration(model), sizeof(float) * (size_t) (H * Q));
	tst_model_set_calibration(model, NULL);
	CHECK(tst_model_forecast(model, x, (int32_t) count, out, errmsg) == TST_OK);
	for (int32_t h = 0; h < H; h++)
	{
		int64_t		step80 = 0;
		int64_t		step95 = 0;

		for (int64_t w = 0; w < count; w++)
		{
			const double *o = out + (w * H + h) * Q;
			const float *d = calibration + h * Q;
			double		y = series.values[series_index[w]][offsets[w] + L + h];
			double		mean;
			double		scale;
			float	   *xn = malloc(sizeof(float) * (size_t) L);

			/* Offsets are in normalized units: times the window's scale. */
			tst_normalize_window(x + w * L, L, xn, &mean, &scale);
			free(xn);
			step80 += y >= o[1] + d[1] * scale - 1e-9 && y <= o[3] + d[3] * scale + 1e-9;
			step95 += y >= o[0] + d[0] * scale - 1e-9 && y <= o[4] + d[4] * scale + 1e-9;
		}
		CHECK(llabs(step80 - (int64_t) ceil(0.8 * (double) (count + 1))) <= 1);
		CHECK(llabs(step95 - (int64_t) ceil(0.95 * (double) (count + 1))) <= 1);
		CHECK(calibration[h * Q] == -calibration[h * Q + 4]);
		CHECK(calibration[h * Q + 1] == -calibration[h * Q + 3]);
	}
	tst_model_set_calibration(model, calibration);

	/* The calibrated, sorted forecasts cover about the nominal share overall. */
	CHECK(tst_model_forecast(model, x, (int32_t) count, out, errmsg) == TST_OK);
	for (int64_t w = 0; w < count; w++)
		for (int32_t h = 0; h < H; h++)
		{
			const double *o = out + (w * H + h) * Q;
			double		y = series.values[series_index[w]][offsets[w] + L + h];

			inside80 += y >= o[1] && y <= o[3];
			inside95 += y >= o[0] && y <= o[4];
		}
	printf("    validation coverage after calibration: 80%% interval %.3f, 95%% interval %.3f\n",
		   (double) inside80 / (double) (count * H), (double) inside95 / (double) (count * H));
	CHECK(fabs((double) inside80 / (double) (count * H) - 0.8) < 0.03);
	CHECK(fabs((double) inside95 / (double) (count * H) - 0.95) < 0.03);
	/* The median has no partner level, so its offset stays 0. */
	for (int32_t h = 0; h < H; h++)
		CHECK(tst_model_calibration(model)[h * Q + 2] == 0.0f);

	/* Without validation the offsets return to 0. */
	options.validation_fraction = 0.0;
	options.epochs = 1;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(result->calibration_windows == 0);
	for (int32_t i = 0; i < H * Q; i++)
		CHECK(tst_model_calibration(model)[i] == 0.0f);

	free(x);
	free(out);
	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* Series shorter than a window plus the validation part are NO_DATA. */
TEST(short_series_no_data)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstSeriesSet empty = {0, NULL, NULL};
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";

	tst_train_options_default(&options);
	CHECK(tst_train(model, &empty, &options, NULL, result, errmsg) == TST_ERR_NO_DATA);
	CHECK(strstr(errmsg, "no series") != NULL);

	/* 39 points cannot hold L + H = 40. */
	make_sines(&series, 2, 39);
	options.validation_fraction = 0.0;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_NO_DATA);
	CHECK(strstr(errmsg, "40 needed") != NULL);
	free_series(&series);

	/* 45 points hold a window, but not one plus a validation part of 8. */
	make_sines(&series, 1, 45);
	options.validation_fraction = 0.1;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_NO_DATA);
	CHECK(strstr(errmsg, "48 needed") != NULL);
	CHECK(strstr(errmsg, "validation 8") != NULL);
	free_series(&series);

	/* With f = 0.5, v = round(n / 2), and n - v >= 40 first at n = 80. */
	make_sines(&series, 1, 79);
	options.validation_fraction = 0.5;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_NO_DATA);
	CHECK(strstr(errmsg, "80 needed") != NULL);
	free_series(&series);

	free(result);
	tst_model_free(model);
}

/* A NaN or infinity in the data is NUMERIC, naming series and position. */
TEST(nonfinite_data_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 2, 100);
	tst_train_options_default(&options);

	series.values[1][7] = NAN;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_NUMERIC);
	CHECK(strstr(errmsg, "series 1") != NULL);
	CHECK(strstr(errmsg, "position 7") != NULL);

	series.values[1][7] = 0.0;
	series.values[0][99] = -INFINITY;
	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_NUMERIC);
	CHECK(strstr(errmsg, "series 0") != NULL);
	CHECK(strstr(errmsg, "position 99") != NULL);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* Options outside their ranges are argument errors. */
TEST(invalid_options_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 100);

#define EXPECT_REJECTED(field, value) \
	do { \
		tst_train_options_default(&options); \
		options.field = (value); \
		errmsg[0] = '\0'; \
		CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_ERR_ARGUMENT); \
		CHECK(strstr(errmsg, #field) != NULL); \
	} while (0)

	EXPECT_REJECTED(epochs, 0);
	EXPECT_REJECTED(epochs, TST_MAX_EPOCHS + 1);
	EXPECT_REJECTED(batch_size, 0);
	EXPECT_REJECTED(learning_rate, NAN);
	EXPECT_REJECTED(learning_rate, 0.0);
	EXPECT_REJECTED(weight_decay, -1.0);
	EXPECT_REJECTED(validation_fraction, 1.0);
	EXPECT_REJECTED(validation_fraction, NAN);
	EXPECT_REJECTED(patience, 0);
	EXPECT_REJECTED(max_seconds, INFINITY);
	EXPECT_REJECTED(clip_norm, -1.0);
	EXPECT_REJECTED(warmup_fraction, 1.5);
	EXPECT_REJECTED(max_windows_per_epoch, -1);
#undef EXPECT_REJECTED

	free_series(&series);
	free(result);
	tst_model_free(model);
}

/* Allocator that counts live blocks, to show the loop frees what it takes. */
typedef struct CountingAllocator
{
	int			live;
	int			total;
} CountingAllocator;

static void *
counting_alloc(void *ctx, size_t size)
{
	CountingAllocator *counter = ctx;

	counter->live++;
	counter->total++;
	return malloc(size);
}

static void
counting_free(void *ctx, void *ptr)
{
	CountingAllocator *counter = ctx;

	counter->live--;
	free(ptr);
}

/* Training memory comes from the given allocator and is all returned. */
TEST(allocator_used_and_released)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 2);
	TstTrainResult *result = new_result();
	TestSeries	series;
	TstTrainOptions options;
	CountingAllocator counter = {0, 0};
	TstAllocator allocator = {counting_alloc, counting_free, &counter};
	char		errmsg[TST_ERRMSG_LEN] = "";

	make_sines(&series, 1, 120);
	tst_train_options_default(&options);
	options.epochs = 2;
	options.allocator = &allocator;

	CHECK(tst_train(model, &series.set, &options, NULL, result, errmsg) == TST_OK);
	CHECK(counter.total >= 4);
	CHECK(counter.live == 0);

	free_series(&series);
	free(result);
	tst_model_free(model);
}

int
main(void)
{
	RUN(schedule_known_steps);
	RUN(options_defaults);
	RUN(window_split_counts);
	RUN(sine_beats_repeat_last);
	RUN(seed_reproducible);
	RUN(early_stopping_restores_best);
	RUN(interrupt_cancels);
	RUN(window_cap_limits_batches);
	RUN(time_limit_stops);
	RUN(calibration_covers_validation);
	RUN(short_series_no_data);
	RUN(nonfinite_data_rejected);
	RUN(invalid_options_rejected);
	RUN(allocator_used_and_released);
	return test_summary();
}
