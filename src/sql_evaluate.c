/*
 * sql_evaluate.c
 *		tst.evaluate: a rolling-origin backtest of a model and of two naive
 *		forecasts over every series of a source.
 *
 * Each series is read through SPI as one tst.series and put on its own
 * detected time grid, gaps interpolated, as tst.train does. Forecast origins
 * are grid slots o in the test range, every stride-th slot from its start,
 * such that the h-step targets o .. o + h - 1 lie in the test range too. At
 * each origin the model forecasts from the context slots before o (padded
 * at the front like tst.forecast when o < context), and the naive methods
 * forecast from the values before o. Only observed target slots are scored:
 * an interpolated gap is not an actual value.
 *
 * Model windows are gathered into batches and run through the engine
 * together. A batch is flushed when full and at the end of each series, so
 * memory is bounded by one series' grid plus one batch. Everything per series
 * lives in a memory context that is reset after the series, and result rows
 * go to a tuplestore (materialize mode), which spills to disk past work_mem.
 *
 * Metric sums are kept per series and method and added into overall sums,
 * so an overall row weighs every scored point equally.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "series.h"
#include "source_query.h"
#include "tst.h"

PG_FUNCTION_INFO_V1(evaluate);

/* Maximum windows per engine call, and maximum bytes of their inputs and outputs. */
#define EVAL_BATCH_WINDOWS 256
#define EVAL_BATCH_BYTES ((Size) 64 * 1024 * 1024)

/* Share of each series' grid that forms the default test range. */
#define EVAL_DEFAULT_TEST_FRACTION 0.2

typedef enum EvalMethod
{
	METHOD_MODEL,
	METHOD_REPEAT_LAST,
	METHOD_SEASONAL_NAIVE,
	N_METHODS
} EvalMethod;

static const char *const method_names[N_METHODS] = {
	"model", "repeat_last", "seasonal_naive"
};

#define N_RESULT_COLUMNS 10

/* Options of tst.evaluate, parsed from its jsonb argument. */
typedef struct EvalOptions
{
	bool		has_test_start;
	bool		has_test_end;
	TimestampTz test_start;
	TimestampTz test_end;
	int32		stride;
	bool		has_confidence; /* false when the option is JSON null */
	double		confidence;
	int32		season_length;	/* 0: detect per series */
	bool		standard;		/* scaling "standard" */
	bool		has_train_start;
	bool		has_train_end;
	TimestampTz train_start;
	TimestampTz train_end;
} EvalOptions;

/* Sums of one method over the scored points of a series or of all series. */
typedef struct EvalSums
{
	int64		windows;
	int64		points;
	double		squared_error;
	double		absolute_error;
	int64		mase_points;	/* points of series with a MASE scale */
	double		scaled_error;	/* |error| / MASE scale of the series */
	double		smape_terms;	/* 2 |error| / (|actual| + |forecast|) */
	int64		covered;		/* actuals inside [lower, upper] */
	double		width;			/* upper - lower */
} EvalSums;

/* What every series of one call shares. */
typedef struct EvalRequest
{
	TstLoadedModel *loaded;		/* NULL: naive methods only */
	int			horizon;
	int			context;		/* model context L, 0 without a model */
	int			min_points;		/* observed slots a model window needs */
	TstQuantileChoice choice;
	EvalOptions options;
	int			n_methods;		/* methods scored */
	EvalMethod	methods[N_METHODS];
} EvalRequest;

/* One series on its grid, with everything its windows need. */
typedef struct EvalSeries
{
	const char *name;			/* NULL for the single series of a source */
	int			n;				/* grid slots */
	double	   *values;			/* (n,) raw values, gaps interpolated */
	bool	   *observed;		/* (n,) slot holds a non-NaN value */
	int		   *observed_before;	/* (n + 1,) observed slots in [0, j) */
	double		mean;			/* metrics compare (x - mean) / scale */
	double		scale;
	double		mase_scale;		/* NaN when the series has none */
	int			season;
	int			test_first;		/* first slot of the test range */
	int			test_last;		/* last slot of the test range */
} EvalSeries;

/* Model windows waiting for the engine, by origin slot. */
typedef struct EvalBatch
{
	int			count;
	int			capacity;
	int			n_outputs;		/* H * Q of the model */
	double	   *windows;		/* (capacity, L) */
	double	   *outputs;		/* (capacity, H, Q) */
	int		   *origins;		/* (capacity,) */
} EvalBatch;

/* Counts for the NOTICEs at the end of a call. */
typedef struct EvalSkips
{
	int64		series;			/* series with no scored window */
	char	   *series_example;
	int64		origins;		/* origins without enough history */
	bool		any_test_slot;	/* some series had a slot in the test range */
	TimestampTz data_first;		/* earliest and latest timestamp read */
	TimestampTz data_last;
	bool		any_data;
} EvalSkips;

/* ---------- options ---------- */

static const char *const option_names[] = {
	"test_start", "test_end", "stride", "confidence", "season_length",
	"scaling", "train_start", "train_end"
};

/* Return the timestamp as text in a new string (timestamptz_to_str reuses its buffer). */
static char *
timestamp_text(TimestampTz ts)
{
	return pstrdup(timestamptz_to_str(ts));
}

static char *
option_string(const JsonbValue *v, const char *key, const char *example)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a string, not a %s", key, tst_json_type_name(v)),
				 errhint("For example: {\"%s\": \"%s\"}.", key, example)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Error context for a timestamp option that timestamptz_in rejects. */
static void
option_errcontext(void *arg)
{
	errcontext("option \"%s\" of tst.evaluate", (const char *) arg);
}

static TimestampTz
option_timestamp(const JsonbValue *v, const char *key)
{
	char	   *text = option_string(v, key, "2024-01-01 00:00:00+00");
	ErrorContextCallback callback;
	TimestampTz result;

	callback.callback = option_errcontext;
	callback.arg = (void *) key;
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	result = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													 CStringGetDatum(text),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	error_context_stack = callback.previous;
	return result;
}

static double
option_number(const JsonbValue *v, const char *key)
{
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number, not a %s", key, tst_json_type_name(v))));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

static int32
option_integer(const JsonbValue *v, const char *key, int32 min_value)
{
	double		d = option_number(v, key);

	if (d != floor(d) || d < min_value || d > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer from %d to %d, not %s",
						key, min_value, PG_INT32_MAX, float8out_internal(d))));
	return (int32) d;
}

static void
set_option(EvalOptions *o, const char *key, const JsonbValue *v)
{
	if (strcmp(key, "test_start") == 0)
	{
		o->test_start = option_timestamp(v, key);
		o->has_test_start = true;
	}
	else if (strcmp(key, "test_end") == 0)
	{
		o->test_end = option_timestamp(v, key);
		o->has_test_end = true;
	}
	else if (strcmp(key, "train_start") == 0)
	{
		o->train_start = option_timestamp(v, key);
		o->has_train_start = true;
	}
	else if (strcmp(key, "train_end") == 0)
	{
		o->train_end = option_timestamp(v, key);
		o->has_train_end = true;
	}
	else if (strcmp(key, "stride") == 0)
		o->stride = option_integer(v, key, 1);
	else if (strcmp(key, "season_length") == 0)
		o->season_length = option_integer(v, key, 1);
	else if (strcmp(key, "confidence") == 0)
	{
		o->has_confidence = v->type != jbvNull;
		if (!o->has_confidence)
			return;
		o->confidence = option_number(v, key);
		if (!(o->confidence > 0.0 && o->confidence < 1.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("confidence %g is out of range", o->confidence),
					 errdetail("The confidence level must be greater than 0 and less than 1.")));
	}
	else if (strcmp(key, "scaling") == 0)
	{
		char	   *scaling = option_string(v, key, "standard");

		if (strcmp(scaling, "standard") == 0)
			o->standard = true;
		else if (strcmp(scaling, "none") == 0)
			o->standard = false;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown scaling \"%s\"", scaling),
					 errhint("Use \"none\" or \"standard\".")));
	}
	else
		elog(ERROR, "unhandled option \"%s\"", key);
}

static void
check_timestamp_order(bool has_start, TimestampTz start, bool has_end,
					  TimestampTz end, const char *start_key, const char *end_key)
{
	if (has_start && has_end && start > end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" %s is after option \"%s\" %s",
						start_key, timestamp_text(start), end_key, timestamp_text(end)),
				 errhint("Give a range whose start is not after its end.")));
}

/* Parse the options object; NULL means every default. */
static void
parse_options(Jsonb *json, EvalOptions *o)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	memset(o, 0, sizeof(EvalOptions));
	o->stride = 1;
	o->has_confidence = true;
	o->confidence = 0.8;
	if (json == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(json) || JB_ROOT_IS_SCALAR(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errhint("For example: '{\"stride\": 24, \"confidence\": 0.95}'.")));

	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		int			i;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		for (i = 0; i < (int) lengthof(option_names); i++)
			if (strcmp(option_names[i], key) == 0)
				break;
		if (i == (int) lengthof(option_names))
		{
			StringInfoData valid;

			initStringInfo(&valid);
			for (int j = 0; j < (int) lengthof(option_names); j++)
				appendStringInfo(&valid, "%s%s", j ? ", " : "", option_names[j]);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\"", key),
					 errdetail("Valid options are: %s.", valid.data)));
		}
		set_option(o, key, &v);
	}

	if ((o->has_train_start || o->has_train_end) && !o->standard)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options \"train_start\" and \"train_end\" need scaling \"standard\""),
				 errhint("Add \"scaling\": \"standard\", or remove the train range.")));
	check_timestamp_order(o->has_test_start, o->test_start, o->has_test_end, o->test_end,
						  "test_start", "test_end");
	check_timestamp_order(o->has_train_start, o->train_start, o->has_train_end, o->train_end,
						  "train_start", "train_end");
}

/* ---------- one series ---------- */

/*
 * Season length for a step: the steps per day for a step that divides a day,
 * 7 for daily, 52 for weekly, 12 for monthly and 4 for quarterly data, and 1
 * otherwise.
 */
static int
detect_season(const Interval *step)
{
	if (step->month == 1)
		return 12;
	if (step->month == 3)
		return 4;
	if (step->month > 0)
		return 1;
	if (step->day == 1)
		return 7;
	if (step->day == 7)
		return 52;
	if (step->day > 0)
		return 1;
	if (step->time > 0 && step->time < USECS_PER_DAY && USECS_PER_DAY % step->time == 0)
		return (int) (USECS_PER_DAY / step->time);
	return 1;
}

/*
 * Mark the slots that hold a non-NaN value, by the nearest-slot rule of
 * tst_series_to_window: a point exactly between two slots goes to the later.
 */
static void
mark_observed(const TstSeries *s, const TimestampTz *grid, int n, bool *observed)
{
	const TimestampTz *ts = TST_SERIES_TS(s);
	const float8 *values = TST_SERIES_VALUES(s);

	for (int i = 0; i < s->count; i++)
	{
		int			k;

		if (isnan(values[i]))
			continue;
		k = tst_series_lower_bound(grid, n, ts[i]);
		if (k == n)
			k = n - 1;
		else if (k > 0 && ts[i] < grid[k - 1] + (grid[k] - grid[k - 1]) / 2)
			k--;
		observed[k] = true;
	}
}

/*
 * Fit the mean and population standard deviation of the observed values of
 * s from start to end (both inclusive).
 */
static void
fit_standard_scaling(const TstSeries *s, const char *name, TimestampTz start,
					 TimestampTz end, double *mean, double *scale)
{
	const TimestampTz *ts = TST_SERIES_TS(s);
	const float8 *values = TST_SERIES_VALUES(s);
	int64		count = 0;
	double		sum = 0.0;
	double		squares = 0.0;

	for (int i = 0; i < s->count; i++)
		if (ts[i] >= start && ts[i] <= end && !isnan(values[i]))
		{
			sum += values[i];
			count++;
		}
	if (count > 0)
	{
		*mean = sum / count;
		for (int i = 0; i < s->count; i++)
			if (ts[i] >= start && ts[i] <= end && !isnan(values[i]))
				squares += (values[i] - *mean) * (values[i] - *mean);
		*scale = sqrt(squares / count);
	}
	if (count == 0 || !(*scale > 0.0) || !isfinite(*scale))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot fit the standard scaling of series \"%s\"", name ? name : "NULL"),
				 count == 0
				 ? errdetail("The series has no values from %s to %s.",
							 timestamp_text(start), timestamp_text(end))
				 : errdetail("Its " INT64_FORMAT " values from %s to %s have a standard deviation of %g.",
							 count, timestamp_text(start), timestamp_text(end), *scale),
				 errhint("Pass a train range where every series varies, or use scaling \"none\".")));
}

/*
 * In-sample MAE of the seasonal naive forecast, on scaled values, over the
 * observed slot pairs (t - season, t) before the test range. NaN when there
 * is no such pair or the MAE is 0.
 */
static double
in_sample_scale(const EvalSeries *es)
{
	double		sum = 0.0;
	int64		count = 0;

	for (int t = es->season; t < es->test_first; t++)
		if (es->observed[t] && es->observed[t - es->season])
		{
			sum += fabs(es->values[t] - es->values[t - es->season]) / es->scale;
			count++;
		}
	if (count == 0 || sum == 0.0)
		return get_float8_nan();
	return sum / count;
}

/*
 * Put s on its grid, and set the test range, scaling and season of es.
 * Returns false when no grid slot lies in the test range.
 */
static bool
prepare_series(const EvalRequest *req, const TstSeries *s, EvalSeries *es)
{
	const EvalOptions *o = &req->options;
	Interval	step;
	TimestampTz *grid;
	TimestampTz last = TST_SERIES_TS(s)[s->count - 1];
	int			n;

	tst_series_detect_step(s, &step);
	n = (int) tst_series_grid_slots(s, &step);
	es->n = n;
	es->values = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE);
	tst_series_to_window(s, &step, n, 1, es->values);

	grid = palloc_extended(sizeof(TimestampTz) * n, MCXT_ALLOC_HUGE);
	for (int j = 0; j < n; j++)
	{
		CHECK_FOR_INTERRUPTS();
		grid[j] = tst_step_add(last, &step, j - (n - 1));
	}
	es->observed = palloc_extended(sizeof(bool) * n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	mark_observed(s, grid, n, es->observed);
	es->observed_before = palloc_extended(sizeof(int) * (n + 1), MCXT_ALLOC_HUGE);
	es->observed_before[0] = 0;
	for (int j = 0; j < n; j++)
		es->observed_before[j + 1] = es->observed_before[j] + (es->observed[j] ? 1 : 0);

	/* Default test range: the last 20% of the grid, at least one horizon. */
	if (o->has_test_start)
		es->test_first = tst_series_lower_bound(grid, n, o->test_start);
	else
		es->test_first = Max(0, n - Max((int) ceil(n * EVAL_DEFAULT_TEST_FRACTION), req->horizon));
	if (o->has_test_end && !TIMESTAMP_IS_NOEND(o->test_end))
		es->test_last = tst_series_lower_bound(grid, n, o->test_end + 1) - 1;
	else
		es->test_last = n - 1;
	if (es->test_first > es->test_last)
		return false;

	es->mean = 0.0;
	es->scale = 1.0;
	if (o->standard)
		fit_standard_scaling(s, es->name,
							 o->has_train_start ? o->train_start : DT_NOBEGIN,
							 o->has_train_end ? o->train_end : grid[es->test_first] - 1,
							 &es->mean, &es->scale);

	/* A detected season needs two full seasons before the test range. */
	if (o->season_length > 0)
		es->season = o->season_length;
	else
	{
		es->season = detect_season(&step);
		if (es->test_first < 2 * es->season)
			es->season = 1;
	}
	es->mase_scale = in_sample_scale(es);
	return true;
}

/* ---------- scoring ---------- */

static inline double
scaled(const EvalSeries *es, double value)
{
	return (value - es->mean) / es->scale;
}

/*
 * Add one scored point, from raw values. sMAPE reads the raw values, because
 * it is scale-free only for values on their own origin; every other metric
 * reads the scaled values.
 */
static void
add_point(EvalSums *sums, const EvalSeries *es, double actual, double forecast)
{
	double		error = (forecast - actual) / es->scale;
	double		denominator = fabs(actual) + fabs(forecast);

	sums->points++;
	sums->squared_error += error * error;
	sums->absolute_error += fabs(error);
	if (!isnan(es->mase_scale))
	{
		sums->scaled_error += fabs(error) / es->mase_scale;
		sums->mase_points++;
	}
	/* A zero denominator means a zero error: the term counts as 0. */
	if (denominator > 0.0)
		sums->smape_terms += 2.0 * fabs(forecast - actual) / denominator;
}

/* Score the naive forecasts from origin o. */
static void
score_naive(const EvalRequest *req, const EvalSeries *es, int o, EvalSums *sums)
{
	for (int m = 0; m < req->n_methods; m++)
	{
		EvalMethod	method = req->methods[m];

		if (method == METHOD_MODEL)
			continue;
		sums[method].windows++;
		for (int h = 0; h < req->horizon; h++)
		{
			int			source;

			if (!es->observed[o + h])
				continue;
			if (method == METHOD_REPEAT_LAST)
				source = o - 1;
			else
				source = o - es->season + h % es->season;
			add_point(&sums[method], es, es->values[o + h], es->values[source]);
		}
	}
}

static void
init_batch(EvalBatch *batch, const EvalRequest *req)
{
	const TstConfig *config = tst_model_config(req->loaded->model);
	Size		per_window;

	batch->count = 0;
	batch->n_outputs = config->horizon * config->n_quantiles;
	per_window = sizeof(double) * ((Size) config->context + batch->n_outputs);
	batch->capacity = (int) Max(1, Min((Size) EVAL_BATCH_WINDOWS, EVAL_BATCH_BYTES / per_window));
	batch->windows = palloc_extended(sizeof(double) * batch->capacity * config->context,
									 MCXT_ALLOC_HUGE);
	batch->outputs = palloc_extended(sizeof(double) * batch->capacity * batch->n_outputs,
									 MCXT_ALLOC_HUGE);
	batch->origins = palloc(sizeof(int) * batch->capacity);
}

/* Copy the context slots before origin o, padded at the front like tst.forecast. */
static void
add_window(EvalBatch *batch, const EvalRequest *req, const EvalSeries *es, int o)
{
	double	   *window = batch->windows + (size_t) batch->count * req->context;
	int			available = Min(o, req->context);
	int			pad = req->context - available;

	for (int j = 0; j < pad; j++)
		window[j] = es->values[0];
	memcpy(window + pad, es->values + (o - available), sizeof(double) * available);
	batch->origins[batch->count++] = o;
}

/* Run the batched windows through the model and score them. */
static void
flush_batch(EvalBatch *batch, const EvalRequest *req, const EvalSeries *es,
			EvalSums *sums)
{
	int			q = tst_model_config(req->loaded->model)->n_quantiles;
	char		errmsg_buf[TST_ERRMSG_LEN] = "";
	TstStatus	status;
	EvalSums   *model_sums = &sums[METHOD_MODEL];

	if (batch->count == 0)
		return;
	tst_apply_blas_threads();
	status = tst_model_forecast(req->loaded->model, batch->windows, batch->count,
								batch->outputs, errmsg_buf);
	if (status != TST_OK)
		tst_report_status(status, errmsg_buf, NULL);

	for (int i = 0; i < batch->count; i++)
	{
		const double *out = batch->outputs + (size_t) i * batch->n_outputs;
		int			o = batch->origins[i];

		model_sums->windows++;
		for (int h = 0; h < req->horizon; h++)
		{
			const double *step_q = out + (size_t) h * q;
			double		actual;

			if (!es->observed[o + h])
				continue;
			add_point(model_sums, es, es->values[o + h], tst_point_forecast(step_q, &req->choice));
			actual = scaled(es, es->values[o + h]);
			if (req->choice.lower >= 0)
			{
				double		lower = scaled(es, step_q[req->choice.lower]);
				double		upper = scaled(es, step_q[req->choice.upper]);

				model_sums->covered += (actual >= lower && actual <= upper) ? 1 : 0;
				model_sums->width += upper - lower;
			}
		}
	}
	batch->count = 0;
}

/*
 * Score every origin of the test range of es into sums. Returns the number
 * of origins skipped for too little history.
 */
static int64
score_series(const EvalRequest *req, const EvalSeries *es, EvalBatch *batch,
			 EvalSums *sums)
{
	int			min_origin = es->season;	/* seasonal naive reads o - season */
	int64		skipped = 0;

	for (int64 o = es->test_first; o + req->horizon - 1 <= es->test_last; o += req->options.stride)
	{
		CHECK_FOR_INTERRUPTS();
		/* A window with no observed target has nothing to score. */
		if (es->observed_before[o + req->horizon] == es->observed_before[o])
			continue;
		if (o < min_origin ||
			(req->loaded != NULL &&
			 es->observed_before[o] - es->observed_before[Max(0, o - req->context)] < req->min_points))
		{
			skipped++;
			continue;
		}
		score_naive(req, es, (int) o, sums);
		if (req->loaded != NULL)
		{
			add_window(batch, req, es, (int) o);
			if (batch->count == batch->capacity)
				flush_batch(batch, req, es, sums);
		}
	}
	if (req->loaded != NULL)
		flush_batch(batch, req, es, sums);
	return skipped;
}

/* ---------- result rows ---------- */

static void
add_sums(EvalSums *total, const EvalSums *part)
{
	total->windows += part->windows;
	total->points += part->points;
	total->squared_error += part->squared_error;
	total->absolute_error += part->absolute_error;
	total->mase_points += part->mase_points;
	total->scaled_error += part->scaled_error;
	total->smape_terms += part->smape_terms;
	total->covered += part->covered;
	total->width += part->width;
}

static void
emit_row(ReturnSetInfo *rsinfo, const EvalRequest *req, const char *series,
		 EvalMethod method, const EvalSums *sums)
{
	Datum		values[N_RESULT_COLUMNS];
	bool		nulls[N_RESULT_COLUMNS];
	double		n = (double) sums->points;
	bool		has_interval = method == METHOD_MODEL && req->choice.lower >= 0;

	if (sums->windows > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("window count " INT64_FORMAT " is out of range for type integer",
						sums->windows),
				 errhint("Use a larger stride or a shorter test range.")));

	memset(nulls, 0, sizeof(nulls));
	nulls[0] = series == NULL;
	values[0] = series ? CStringGetTextDatum(series) : (Datum) 0;
	values[1] = CStringGetTextDatum(method_names[method]);
	values[2] = Int32GetDatum((int32) sums->windows);
	if (sums->points == 0)
	{
		for (int i = 3; i < N_RESULT_COLUMNS; i++)
			nulls[i] = true;
	}
	else
	{
		values[3] = Float8GetDatum(sums->squared_error / n);
		values[4] = Float8GetDatum(sums->absolute_error / n);
		values[5] = Float8GetDatum(sqrt(sums->squared_error / n));
		nulls[6] = sums->mase_points == 0;
		values[6] = Float8GetDatum(nulls[6] ? 0.0 : sums->scaled_error / sums->mase_points);
		values[7] = Float8GetDatum(100.0 * sums->smape_terms / n);
		nulls[8] = nulls[9] = !has_interval;
		values[8] = Float8GetDatum(has_interval ? sums->covered / n : 0.0);
		values[9] = Float8GetDatum(has_interval ? sums->width / n : 0.0);
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* ---------- entry point ---------- */

/* Error context: which series of the source failed. */
static void
evaluate_errcontext(void *arg)
{
	const char *const *series = arg;

	if (*series)
		errcontext("evaluating series \"%s\"", *series);
}

static void
init_request(EvalRequest *req, FunctionCallInfo fcinfo)
{
	parse_options(PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6), &req->options);

	req->n_methods = 0;
	req->loaded = NULL;
	req->context = 0;
	req->min_points = 1;
	memset(&req->choice, 0, sizeof(req->choice));
	req->choice.lower = req->choice.upper = -1;
	if (!PG_ARGISNULL(0))
	{
		const TstConfig *config;

		req->loaded = tst_get_model(text_to_cstring(PG_GETARG_TEXT_PP(0)));
		config = tst_model_config(req->loaded->model);
		req->horizon = tst_resolve_horizon(req->loaded, PG_ARGISNULL(5),
										   PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5));
		tst_choose_quantiles(config, req->options.confidence, req->options.has_confidence,
							 psprintf("%s@%d", req->loaded->name, req->loaded->version),
							 &req->choice);
		req->context = config->context;
		/* As for tst.forecast: two points fix the step, a patch needs patch_len. */
		req->min_points = Max(2, config->patch_len);
		req->methods[req->n_methods++] = METHOD_MODEL;
	}
	else if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument horizon must not be NULL when model is NULL"),
				 errhint("Pass the number of steps to forecast, or a model whose horizon is used.")));
	else
	{
		req->horizon = PG_GETARG_INT32(5);
		if (req->horizon < 1 || req->horizon > TST_MAX_HORIZON)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("horizon %d is out of range", req->horizon),
					 errdetail("The horizon must be from 1 to %d steps.", TST_MAX_HORIZON)));
	}
	req->methods[req->n_methods++] = METHOD_REPEAT_LAST;
	req->methods[req->n_methods++] = METHOD_SEASONAL_NAIVE;
}

static void
report_skips(const EvalRequest *req, const EvalSkips *skips)
{
	const EvalOptions *o = &req->options;

	if ((o->has_test_start || o->has_test_end) && skips->any_data && !skips->any_test_slot)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("test range from %s to %s is outside the data",
						o->has_test_start ? timestamp_text(o->test_start) : "-infinity",
						o->has_test_end ? timestamp_text(o->test_end) : "infinity"),
				 errdetail("The data runs from %s to %s.",
						   timestamp_text(skips->data_first),
						   timestamp_text(skips->data_last)),
				 errhint("Pass test_start and test_end within the data, or omit them for the last 20%% of each series.")));
	if (skips->origins > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " test windows with too little history before their origin",
						skips->origins),
				 errdetail("An origin needs one season of steps before it for the seasonal naive forecast%s.",
						   req->loaded ? psprintf(" and %d observed steps among the %d before it for the model",
												  req->min_points, req->context) : ""),
				 errhint("Start the test range later, or pass a smaller season_length.")));
	if (skips->series > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " series with no complete test window, such as \"%s\"",
						skips->series, skips->series_example),
				 errdetail("A window needs %d steps inside the test range and enough history before its origin.",
						   req->horizon),
				 errhint("Use a longer test range or a shorter horizon.")));
}

/*
 * tst.evaluate(model, source, time_column, value_column, series_column,
 *				horizon, options)
 *		Backtest a model and the naive forecasts over every series of a
 *		source. Returns one row per series and method (unless the source is
 *		one series) and one overall row per method with series NULL.
 */
Datum
evaluate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EvalRequest req;
	EvalBatch	batch = {0};
	EvalSums	overall[N_METHODS];
	EvalSkips	skips;
	char	   *query;
	bool		by_series;
	SPIPlanPtr	plan;
	Portal		portal;
	const char *current_series = NULL;
	ErrorContextCallback errcallback;
	MemoryContext call_context = CurrentMemoryContext;
	MemoryContext series_context;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 1; i < 4; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %s must not be NULL",
							(const char *[]) {"model", "source", "time_column", "value_column"}[i])));

	init_request(&req, fcinfo);
	by_series = !PG_ARGISNULL(4);
	query = tst_source_series_query(text_to_cstring(PG_GETARG_TEXT_PP(1)),
									text_to_cstring(PG_GETARG_TEXT_PP(2)),
									text_to_cstring(PG_GETARG_TEXT_PP(3)),
									by_series ? text_to_cstring(PG_GETARG_TEXT_PP(4)) : NULL);
	if (req.loaded != NULL)
		init_batch(&batch, &req);
	memset(overall, 0, sizeof(overall));
	memset(&skips, 0, sizeof(skips));
	series_context = AllocSetContextCreate(call_context, "tst evaluate series",
										   ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "preparing the source query failed: %s",
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	errcallback.callback = evaluate_errcontext;
	errcallback.arg = (void *) &current_series;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/* One series at a time: a series can be as large as the whole source. */
	for (;;)
	{
		HeapTuple	tuple;
		TupleDesc	desc;
		bool		isnull;
		Datum		datum;
		TstSeries  *history = NULL;
		EvalSeries	es;
		EvalSums	sums[N_METHODS];
		MemoryContext spi_context;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		CHECK_FOR_INTERRUPTS();

		spi_context = MemoryContextSwitchTo(series_context);
		datum = SPI_getbinval(tuple, desc, 1, &isnull);
		current_series = isnull ? NULL : TextDatumGetCString(datum);
		datum = SPI_getbinval(tuple, desc, 2, &isnull);
		if (!isnull)
			history = DatumGetTstSeriesP(datum);
		memset(sums, 0, sizeof(sums));
		memset(&es, 0, sizeof(es));
		es.name = current_series;

		if (history != NULL && history->count > 0)
		{
			TimestampTz first = TST_SERIES_TS(history)[0];
			TimestampTz last = TST_SERIES_TS(history)[history->count - 1];

			skips.data_first = skips.any_data ? Min(skips.data_first, first) : first;
			skips.data_last = skips.any_data ? Max(skips.data_last, last) : last;
			skips.any_data = true;
		}
		/* A series of one point has no time step, so it has no window. */
		if (history != NULL && history->count >= 2 && prepare_series(&req, history, &es))
		{
			skips.any_test_slot = true;
			skips.origins += score_series(&req, &es, &batch, sums);
		}
		/* Every method scores the same windows. */
		if (sums[METHOD_REPEAT_LAST].windows == 0 && skips.series++ == 0)
			skips.series_example = MemoryContextStrdup(call_context,
													   current_series ? current_series : "NULL");

		MemoryContextSwitchTo(call_context);
		for (int m = 0; m < req.n_methods; m++)
		{
			if (by_series)
				emit_row(rsinfo, &req, current_series, req.methods[m], &sums[req.methods[m]]);
			add_sums(&overall[req.methods[m]], &sums[req.methods[m]]);
		}
		current_series = NULL;
		MemoryContextReset(series_context);
		SPI_freetuptable(SPI_tuptable);
		MemoryContextSwitchTo(spi_context);
	}
	error_context_stack = errcallback.previous;
	SPI_cursor_close(portal);
	SPI_finish();

	report_skips(&req, &skips);
	for (int m = 0; m < req.n_methods; m++)
		emit_row(rsinfo, &req, NULL, req.methods[m], &overall[req.methods[m]]);
	MemoryContextDelete(series_context);
	return (Datum) 0;
}
