/*
 * test_stability.c
 *		Numeric edge cases of window normalization and training: levels far
 *		from zero, tiny and huge magnitudes, constant windows.
 *
 * The reference statistics are computed in long double with two passes
 * (mean first, then the squared deviations), which is what docs/model.md
 * specifies for tst_normalize_window in double.
 */
#include "harness.h"
#include "tst_core.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW 96

/* Two-pass mean and population standard deviation in long double. */
static void
reference_stats(const double *x, int n, long double *mean, long double *sd)
{
	long double sum = 0.0L;
	long double squares = 0.0L;

	for (int i = 0; i < n; i++)
		sum += x[i];
	*mean = sum / n;
	for (int i = 0; i < n; i++)
		squares += (x[i] - *mean) * (x[i] - *mean);
	*sd = sqrtl(squares / n);
}

/* A deterministic pattern in [-1, 1] scaled by spread around level. */
static void
fill_window(double *x, int n, double level, double spread)
{
	for (int i = 0; i < n; i++)
		x[i] = level + spread * sin(0.37 * i + 0.5) * cos(0.11 * i);
}

/* Normalize and compare statistics and every output with the reference. */
static void
check_against_reference(double level, double spread)
{
	double		x[WINDOW];
	float		xn[WINDOW];
	double		mean;
	double		scale;
	long double ref_mean;
	long double ref_sd;

	fill_window(x, WINDOW, level, spread);
	tst_normalize_window(x, WINDOW, xn, &mean, &scale);
	reference_stats(x, WINDOW, &ref_mean, &ref_sd);

	CHECK_CLOSE(mean, (double) ref_mean, 1e-15);
	/* The scale is relative to the spread, not to the level. */
	CHECK(fabs(scale - (double) ref_sd) <= 1e-9 * (double) ref_sd);
	for (int i = 0; i < WINDOW; i++)
	{
		double		expected = (double) ((x[i] - ref_mean) / ref_sd);

		CHECK(fabs(xn[i] - expected) <= 1e-5 * fmax(1.0, fabs(expected)));
	}
}

TEST(normalize_level_1e7_spread_0_01)
{
	check_against_reference(1e7, 0.01);
}

TEST(normalize_level_1e7_spread_1e_minus_8)
{
	/* sd / |mean| is about 1e-15 here, below the 1e-10 constant threshold. */
	double		x[WINDOW];
	float		xn[WINDOW];
	double		mean;
	double		scale;

	fill_window(x, WINDOW, 1e7, 1e-8);
	tst_normalize_window(x, WINDOW, xn, &mean, &scale);
	CHECK(scale == 1.0);
	for (int i = 0; i < WINDOW; i++)
		CHECK(fabs(xn[i]) < 1e-6);
}

TEST(normalize_values_near_1e_minus_7)
{
	check_against_reference(1e-7, 1e-8);
	check_against_reference(0.0, 1e-7);
}

TEST(normalize_negative_level)
{
	check_against_reference(-3e5, 2.5);
}

TEST(normalize_constant_and_zero)
{
	double		x[WINDOW];
	float		xn[WINDOW];
	double		mean;
	double		scale;

	fill_window(x, WINDOW, 5.0, 0.0);
	tst_normalize_window(x, WINDOW, xn, &mean, &scale);
	CHECK(mean == 5.0);
	CHECK(scale == 1.0);
	for (int i = 0; i < WINDOW; i++)
		CHECK(xn[i] == 0.0f);

	fill_window(x, WINDOW, 0.0, 0.0);
	tst_normalize_window(x, WINDOW, xn, &mean, &scale);
	CHECK(mean == 0.0);
	CHECK(scale == 1.0);
}

TEST(normalize_huge_values_overflow_scale)
{
	/* Squared deviations of 1e300 overflow; callers must reject the window. */
	double		x[WINDOW];
	float		xn[WINDOW];
	double		mean;
	double		scale;

	fill_window(x, WINDOW, 0.0, 1e300);
	tst_normalize_window(x, WINDOW, xn, &mean, &scale);
	CHECK(isfinite(mean));
	CHECK(!isfinite(scale));
}

static TstConfig
tiny_config(void)
{
	TstConfig	config;

	tst_config_default(&config);
	config.context = 16;
	config.horizon = 4;
	config.patch_len = 4;
	config.patch_stride = 4;
	config.d_model = 8;
	config.n_heads = 2;
	config.n_layers = 1;
	config.d_ff = 8;
	config.dropout = 0.0f;
	config.window = 2;
	return config;
}

/* Train one epoch on one series scaled by factor; returns the status. */
static TstStatus
train_scaled(double level, double factor, char *errmsg)
{
	TstConfig	config = tiny_config();
	TstModel   *model = NULL;
	TstTrainOptions options;
	TstTrainResult *result = calloc(1, sizeof(TstTrainResult));
	double	   *values = malloc(200 * sizeof(double));
	const double *series[1];
	int64_t		lengths[1] = {200};
	TstSeriesSet set;
	TstStatus	status;

	for (int i = 0; i < 200; i++)
		values[i] = level + factor * sin(0.3 * i);
	series[0] = values;
	set.n_series = 1;
	set.values = series;
	set.lengths = lengths;

	status = tst_model_create(&config, &tst_malloc_allocator, &model, errmsg);
	if (status == TST_OK)
	{
		tst_model_init(model, 1);
		tst_train_options_default(&options);
		options.epochs = 1;
		status = tst_train(model, &set, &options, NULL, result, errmsg);
		tst_model_free(model);
	}
	free(values);
	free(result);
	return status;
}

TEST(train_level_1e7_spread_0_01)
{
	char		errmsg[TST_ERRMSG_LEN] = "";

	CHECK(train_scaled(1e7, 0.01, errmsg) == TST_OK);
}

TEST(train_values_near_1e_minus_7)
{
	char		errmsg[TST_ERRMSG_LEN] = "";

	CHECK(train_scaled(0.0, 1e-7, errmsg) == TST_OK);
}

TEST(train_huge_values_rejected)
{
	char		errmsg[TST_ERRMSG_LEN] = "";

	CHECK(train_scaled(0.0, 1e300, errmsg) == TST_ERR_NUMERIC);
	CHECK(strstr(errmsg, "too large to normalize") != NULL);
}

int
main(void)
{
	RUN(normalize_level_1e7_spread_0_01);
	RUN(normalize_level_1e7_spread_1e_minus_8);
	RUN(normalize_values_near_1e_minus_7);
	RUN(normalize_negative_level);
	RUN(normalize_constant_and_zero);
	RUN(normalize_huge_values_overflow_scale);
	RUN(train_level_1e7_spread_0_01);
	RUN(train_values_near_1e_minus_7);
	RUN(train_huge_values_rejected);
	return test_summary();
}
