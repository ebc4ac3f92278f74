/*
 * sql_train.c
 *		tst.train: fit a model on a source and store it in tst.models.
 *
 * The source is read through SPI as one tst.series per series, with the
 * gathering, sorting and duplicate rules of tst.series_agg. Each series is
 * put on its own detected time grid with gaps interpolated, and the engine
 * trains one global model over all of them. Everything lives in a memory
 * context below the function's, so an error or a cancel frees it all.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "series.h"
#include "source_query.h"
#include "tst.h"

PG_FUNCTION_INFO_V1(train);

/* Rows fetched from the source cursor at a time. */
#define FETCH_ROWS 64

/* Training data gathered from the source. */
typedef struct TrainData
{
	int32		n_series;
	int32		capacity;
	double	  **values;			/* regularized series */
	int64	   *lengths;
	int64		rows;			/* non-NULL source values */
	int32		skipped;		/* series with fewer than 2 points */
} TrainData;

/* Number of grid slots from the first to the last timestamp of s. */
int64
tst_series_grid_slots(const TstSeries *s, const Interval *step)
{
	TimestampTz first = TST_SERIES_TS(s)[0];
	TimestampTz last = TST_SERIES_TS(s)[s->count - 1];
	double		slots;

	if (step->month > 0)
	{
		struct pg_tm tm_first,
					tm_last;
		fsec_t		fsec;
		int			tz;

		if (timestamp2tm(first, &tz, &tm_first, &fsec, NULL, NULL) != 0 ||
			timestamp2tm(last, &tz, &tm_last, &fsec, NULL, NULL) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp out of range")));
		slots = ((tm_last.tm_year - tm_first.tm_year) * 12.0 +
				 (tm_last.tm_mon - tm_first.tm_mon)) / step->month;
	}
	else if (step->day > 0)
		slots = (double) (last - first) / ((double) USECS_PER_DAY * step->day);
	else
		slots = (double) (last - first) / (double) step->time;

	slots = rint(slots) + 1;
	if (slots > (double) TST_SERIES_MAX_POINTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("series spans %.0f time steps, more than the limit of %d",
						slots, TST_SERIES_MAX_POINTS),
				 errhint("Train on a shorter range, or aggregate the data to a coarser step.")));
	return (int64) slots;
}

/* Read every series of the source and put it on its time grid. */
static void
gather_train_data(const char *query, TrainData *data, MemoryContext data_context)
{
	Portal		portal;
	SPIPlanPtr	plan;

	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "preparing the source query failed: %s",
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;
			TstSeries  *s;
			Interval	step;
			int64		slots;
			MemoryContext old;
			double	   *values;

			CHECK_FOR_INTERRUPTS();
			d = SPI_getbinval(tuple, desc, 3, &isnull);
			data->rows += isnull ? 0 : DatumGetInt64(d);
			d = SPI_getbinval(tuple, desc, 2, &isnull);
			if (isnull)
				continue;		/* a series whose rows were all NULL */
			s = DatumGetTstSeriesP(d);
			if (s->count < 2)
			{
				data->skipped++;
				continue;
			}
			tst_series_detect_step(s, &step);
			slots = tst_series_grid_slots(s, &step);

			old = MemoryContextSwitchTo(data_context);
			if (data->n_series == data->capacity)
			{
				if (data->capacity == 0)
				{
					data->capacity = 16;
					data->values = palloc(sizeof(double *) * data->capacity);
					data->lengths = palloc(sizeof(int64) * data->capacity);
				}
				else
				{
					data->capacity *= 2;
					data->values = repalloc_huge(data->values, sizeof(double *) * data->capacity);
					data->lengths = repalloc_huge(data->lengths, sizeof(int64) * data->capacity);
				}
			}
			values = palloc_extended(sizeof(double) * slots, MCXT_ALLOC_HUGE);
			MemoryContextSwitchTo(old);

			tst_series_to_window(s, &step, (int) slots, 1, values);
			data->values[data->n_series] = values;
			data->lengths[data->n_series] = slots;
			data->n_series++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
}

static bool
train_check_interrupt(void *ctx)
{
	CHECK_FOR_INTERRUPTS();
	return false;
}

static void
train_on_epoch(void *ctx, const TstEpochStats *stats)
{
	const TstTrainOptions *options = ctx;

	if (isnan(stats->validation_loss))
		ereport(NOTICE,
				(errmsg("epoch %d/%d: train loss %.6f, %.1f s",
						stats->epoch, options->epochs, stats->train_loss, stats->seconds)));
	else
		ereport(NOTICE,
				(errmsg("epoch %d/%d: train loss %.6f, validation loss %.6f, %.1f s",
						stats->epoch, options->epochs, stats->train_loss,
						stats->validation_loss, stats->seconds)));
}

/* A finite double as JSON, or null. */
static const char *
json_double(double value)
{
	return isfinite(value) ? float8out_internal(value) : "null";
}

static Jsonb *
build_metrics(const TrainData *data, const TstTrainOptions *o, const TstTrainResult *r)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"rows\": " INT64_FORMAT ", \"series\": %d, \"series_skipped\": %d, "
					 "\"train_windows\": " INT64_FORMAT ", \"validation_windows\": " INT64_FORMAT ", "
					 "\"calibration_windows\": " INT64_FORMAT ", "
					 "\"epochs_run\": %d, \"best_epoch\": %d, \"seconds\": %s, \"train_loss\": [",
					 data->rows, data->n_series, data->skipped,
					 r->train_windows, r->validation_windows, r->calibration_windows,
					 r->epochs_run, r->best_epoch, json_double(r->seconds));
	for (int i = 0; i < r->n_history; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", json_double(r->train_loss[i]));
	appendStringInfoString(&buf, "], \"validation_loss\": [");
	for (int i = 0; i < r->n_history; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", json_double(r->validation_loss[i]));
	appendStringInfo(&buf, "], \"options\": {\"epochs\": %d, \"batch_size\": %d, "
					 "\"learning_rate\": %s, \"weight_decay\": %s, \"validation_fraction\": %s, "
					 "\"patience\": %d, \"seed\": " UINT64_FORMAT ", \"max_seconds\": %s, "
					 "\"clip_norm\": %s, \"warmup_fraction\": %s, \"max_windows_per_epoch\": " INT64_FORMAT "}}",
					 o->epochs, o->batch_size, json_double(o->learning_rate),
					 json_double(o->weight_decay), json_double(o->validation_fraction),
					 o->patience, o->seed, json_double(o->max_seconds),
					 json_double(o->clip_norm), json_double(o->warmup_fraction),
					 o->max_windows_per_epoch);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

Datum
train(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *source;
	char	   *time_column;
	char	   *value_column;
	char	   *series_column;
	int32		horizon;
	Jsonb	   *options;
	TstConfig	config;
	TstTrainOptions train_options;
	TstTrainCallbacks callbacks;
	TstTrainResult *result;
	TstAllocator allocator;
	TstModel   *model;
	TstStatus	status;
	TrainData	data = {0};
	char		errmsg_buf[TST_ERRMSG_LEN] = "";
	MemoryContext train_context;
	MemoryContext old;
	char	   *query;
	int32		version;

	for (int i = 0; i < 4; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %s must not be NULL",
							(const char *[]) {"name", "source", "time_column", "value_column"}[i])));
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument horizon must not be NULL"),
				 errhint("Pass the number of steps to forecast, or omit it for 24.")));

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source = text_to_cstring(PG_GETARG_TEXT_PP(1));
	time_column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	value_column = text_to_cstring(PG_GETARG_TEXT_PP(3));
	series_column = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	horizon = PG_GETARG_INT32(5);
	options = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);

	if (name[0] == '\0' || strchr(name, '@') != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model name \"%s\"", name),
				 errdetail("A model name must be non-empty and must not contain \"@\", which separates a name from a version.")));
	if (horizon < 1 || horizon > TST_MAX_HORIZON)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("horizon %d is out of range", horizon),
				 errdetail("The horizon must be from 1 to %d steps.", TST_MAX_HORIZON)));

	if (options == NULL)
		options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	tst_parse_train_options(options, horizon, &config, &train_options);

	train_context = AllocSetContextCreate(CurrentMemoryContext, "tst train",
										  ALLOCSET_DEFAULT_SIZES);
	query = tst_source_series_query(source, time_column, value_column, series_column);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	gather_train_data(query, &data, train_context);
	SPI_finish();

	if (data.n_series == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source has no series with at least 2 values"),
				 errdetail("The source returned " INT64_FORMAT " non-NULL values.", data.rows),
				 errhint("Check the source, time_column and value_column arguments.")));

	old = MemoryContextSwitchTo(train_context);
	tst_context_allocator(&allocator, train_context);
	train_options.allocator = &allocator;
	status = tst_model_create(&config, &allocator, &model, errmsg_buf);
	if (status != TST_OK)
		tst_report_status(status, errmsg_buf, NULL);
	tst_model_init(model, train_options.seed);

	callbacks.check_interrupt = train_check_interrupt;
	callbacks.on_epoch = train_on_epoch;
	callbacks.ctx = &train_options;
	result = palloc0(sizeof(TstTrainResult));

	{
		TstSeriesSet set;

		set.n_series = data.n_series;
		set.values = (const double *const *) data.values;
		set.lengths = data.lengths;
		tst_apply_blas_threads();
		status = tst_train(model, &set, &train_options, &callbacks, result, errmsg_buf);
	}
	if (status == TST_ERR_NO_DATA)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", errmsg_buf),
				 errdetail("Every training window needs context + horizon consecutive steps, and the last part of each series is held out for validation."),
				 errhint("Use longer series, a smaller context or horizon, or validation_fraction 0.")));
	if (status != TST_OK)
		tst_report_status(status, errmsg_buf, NULL);
	MemoryContextSwitchTo(old);

	version = tst_store_model(name, model, build_metrics(&data, &train_options, result));
	MemoryContextDelete(train_context);
	PG_RETURN_INT32(version);
}
