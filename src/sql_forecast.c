/*
 * sql_forecast.c
 *		tst.forecast, tst.forecast_agg and tst.forecast_table.
 *
 * All three turn histories into context windows (src/series.c), run them
 * through the engine in batches, and turn the quantile outputs into rows.
 * The median is the point forecast, and the quantiles (1 - c) / 2 and
 * (1 + c) / 2 bound the interval for confidence c.
 *
 * The set-returning functions use materialize mode. A forecast is at most
 * TST_MAX_HORIZON rows per series, and the tuplestore spills to disk past
 * work_mem, so materializing keeps memory bounded however many series there
 * are. It also lets forecast_table batch series through the engine.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplesort.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "series.h"
#include "source_query.h"
#include "tst.h"

PG_FUNCTION_INFO_V1(forecast);
PG_FUNCTION_INFO_V1(forecast_agg_finalfn);
PG_FUNCTION_INFO_V1(forecast_agg_transfn_default);
PG_FUNCTION_INFO_V1(forecast_table);

/* The transition function of tst.forecast_agg, defined in series_agg.c. */
extern Datum forecast_agg_transfn(PG_FUNCTION_ARGS);

/* Series run through the engine together by tst.forecast_table. */
#define FORECAST_BATCH 256

/* Windows waiting for the engine, with what is needed to emit their rows. */
typedef struct ForecastBatch
{
	int			count;
	int			capacity;
	int			context;		/* L of the model */
	int			n_outputs;		/* H * Q of the model */
	double	   *windows;		/* (capacity, L) */
	double	   *outputs;		/* (capacity, H, Q) */
	MemoryContext memory;		/* where the batch and series names live */
	char	  **series;			/* series name or NULL, per window */
	TimestampTz *last_ts;		/* newest timestamp of each history */
	Interval   *steps;			/* detected step of each history */
} ForecastBatch;

/* What every emitted row of one call shares. */
typedef struct ForecastRequest
{
	TstLoadedModel *loaded;
	int			horizon;
	TstQuantileChoice choice;
	int			min_points;
} ForecastRequest;

int
tst_resolve_horizon(const TstLoadedModel *loaded, bool isnull, int32 horizon)
{
	int			model_horizon = tst_model_config(loaded->model)->horizon;

	if (isnull)
		return model_horizon;
	if (horizon < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("horizon %d is out of range", horizon),
				 errdetail("The horizon must be at least 1 step.")));
	if (horizon > model_horizon)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("horizon %d exceeds the horizon %d of model \"%s@%d\"",
						horizon, model_horizon, loaded->name, loaded->version),
				 errhint("Pass a horizon of at most %d, or train a model with a longer horizon.",
						 model_horizon)));
	return horizon;
}

static void
init_request(ForecastRequest *req, const char *model_ref, bool horizon_null,
			 int32 horizon, bool confidence_null, double confidence)
{
	const TstConfig *config;

	req->loaded = tst_get_model(model_ref);
	config = tst_model_config(req->loaded->model);
	req->horizon = tst_resolve_horizon(req->loaded, horizon_null, horizon);
	tst_choose_quantiles(config, confidence, !confidence_null,
						 psprintf("%s@%d", req->loaded->name, req->loaded->version),
						 &req->choice);
	/* Two points fix the step; a patch needs patch_len observed steps. */
	req->min_points = Max(2, config->patch_len);
}

static void
init_batch(ForecastBatch *batch, const TstConfig *config, int capacity)
{
	batch->count = 0;
	batch->capacity = capacity;
	batch->memory = CurrentMemoryContext;
	batch->context = config->context;
	batch->n_outputs = config->horizon * config->n_quantiles;
	batch->windows = palloc_extended(sizeof(double) * capacity * config->context, MCXT_ALLOC_HUGE);
	batch->outputs = palloc_extended(sizeof(double) * capacity * batch->n_outputs, MCXT_ALLOC_HUGE);
	batch->series = palloc0(sizeof(char *) * capacity);
	batch->last_ts = palloc(sizeof(TimestampTz) * capacity);
	batch->steps = palloc(sizeof(Interval) * capacity);
}

/*
 * Put one history into the batch as a window. A history with fewer than
 * req->min_points observed points in its window raises an error, or, with
 * skip_short, is left out and makes this return false.
 */
static bool
add_history(ForecastBatch *batch, const ForecastRequest *req, const TstSeries *s,
			const char *series, bool skip_short)
{
	int			i = batch->count;
	double	   *window = batch->windows + (size_t) i * batch->context;

	if (skip_short && s->count < req->min_points)
		return false;
	tst_series_detect_step(s, &batch->steps[i]);
	if (skip_short &&
		tst_series_to_window(s, &batch->steps[i], batch->context, 0, window) < req->min_points)
		return false;
	tst_series_to_window(s, &batch->steps[i], batch->context, req->min_points, window);
	batch->last_ts[i] = TST_SERIES_TS(s)[s->count - 1];
	batch->series[i] = series ? MemoryContextStrdup(batch->memory, series) : NULL;
	batch->count++;
	return true;
}

static void
run_batch(ForecastBatch *batch, const ForecastRequest *req)
{
	char		errmsg_buf[TST_ERRMSG_LEN] = "";
	TstStatus	status;

	if (batch->count == 0)
		return;
	tst_apply_blas_threads();
	status = tst_model_forecast(req->loaded->model, batch->windows, batch->count,
								batch->outputs, errmsg_buf);
	if (status != TST_OK)
		tst_report_status(status, errmsg_buf, NULL);
}

/*
 * Emit the rows of every window in the batch, then empty it. The rows go to
 * sorter when it is not NULL, and to the result tuplestore otherwise.
 */
static void
emit_batch(ForecastBatch *batch, const ForecastRequest *req, ReturnSetInfo *rsinfo,
		   bool with_series, Tuplesortstate *sorter)
{
	int			q = tst_model_config(req->loaded->model)->n_quantiles;
	Datum		values[6];
	bool		nulls[6];
	int			first = with_series ? 1 : 0;
	TupleTableSlot *sort_slot = NULL;

	if (sorter != NULL)
		sort_slot = MakeSingleTupleTableSlot(rsinfo->setDesc, &TTSOpsVirtual);
	for (int i = 0; i < batch->count; i++)
	{
		const double *out = batch->outputs + (size_t) i * batch->n_outputs;

		CHECK_FOR_INTERRUPTS();
		for (int h = 0; h < req->horizon; h++)
		{
			const double *step_q = out + (size_t) h * q;

			memset(nulls, 0, sizeof(nulls));
			if (with_series)
			{
				nulls[0] = batch->series[i] == NULL;
				values[0] = nulls[0] ? (Datum) 0 : CStringGetTextDatum(batch->series[i]);
			}
			values[first] = Int32GetDatum(h + 1);
			values[first + 1] = TimestampTzGetDatum(tst_step_add(batch->last_ts[i],
																 &batch->steps[i], h + 1));
			values[first + 2] = Float8GetDatum(tst_point_forecast(step_q, &req->choice));
			if (req->choice.lower >= 0)
			{
				values[first + 3] = Float8GetDatum(step_q[req->choice.lower]);
				values[first + 4] = Float8GetDatum(step_q[req->choice.upper]);
			}
			else
				nulls[first + 3] = nulls[first + 4] = true;
			if (sorter != NULL)
			{
				ExecClearTuple(sort_slot);
				memcpy(sort_slot->tts_values, values, sizeof(values));
				memcpy(sort_slot->tts_isnull, nulls, sizeof(nulls));
				ExecStoreVirtualTuple(sort_slot);
				tuplesort_puttupleslot(sorter, sort_slot);
			}
			else
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		if (batch->series[i])
			pfree(batch->series[i]);
	}
	if (sort_slot != NULL)
		ExecDropSingleTupleTableSlot(sort_slot);
	batch->count = 0;
}

/*
 * tst.forecast(model, history, horizon, confidence)
 *		Forecast the steps after one history. A NULL model or history gives
 *		no rows; a NULL confidence gives NULL bounds.
 */
Datum
forecast(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ForecastRequest req;
	ForecastBatch batch;
	TstSeries  *history;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return (Datum) 0;

	init_request(&req, text_to_cstring(PG_GETARG_TEXT_PP(0)),
				 PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2),
				 PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0.0 : PG_GETARG_FLOAT8(3));
	history = PG_GETARG_TST_SERIES_P(1);
	if (history->count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("history is empty"),
				 errdetail("A forecast needs at least %d points of history.", req.min_points)));

	init_batch(&batch, tst_model_config(req.loaded->model), 1);
	add_history(&batch, &req, history, NULL, false);
	run_batch(&batch, &req);
	emit_batch(&batch, &req, rsinfo, false, NULL);
	return (Datum) 0;
}

/*
 * tst.forecast_agg(model, ts, value [, horizon]) final function
 *		The point forecasts of the gathered history, as float8[].
 */
Datum
forecast_agg_finalfn(PG_FUNCTION_ARGS)
{
	TstSeriesState *state;
	TstSeries  *history;
	const text *model;
	int32		horizon = 0;
	bool		horizon_null;
	ForecastRequest req;
	ForecastBatch batch;
	Datum	   *points;
	int			q;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (TstSeriesState *) PG_GETARG_POINTER(0);
	model = tst_series_state_model(state);
	history = tst_series_state_finish(state);
	if (model == NULL || history == NULL)
		PG_RETURN_NULL();
	horizon_null = !tst_series_state_horizon(state, &horizon);

	init_request(&req, text_to_cstring(model), horizon_null, horizon, true, 0.0);
	init_batch(&batch, tst_model_config(req.loaded->model), 1);
	if (!add_history(&batch, &req, history, NULL, true))
		PG_RETURN_NULL();		/* too short to forecast, as documented */
	run_batch(&batch, &req);

	q = tst_model_config(req.loaded->model)->n_quantiles;
	points = palloc(sizeof(Datum) * req.horizon);
	for (int h = 0; h < req.horizon; h++)
		points[h] = Float8GetDatum(tst_point_forecast(batch.outputs + (size_t) h * q,
													  &req.choice));
	PG_RETURN_ARRAYTYPE_P(construct_array(points, req.horizon, FLOAT8OID,
										  sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * tst.forecast_agg(model, ts, value) transition function
 *		Forwards to the four-argument transition with a NULL horizon, which
 *		means the model's own horizon.
 */
Datum
forecast_agg_transfn_default(PG_FUNCTION_ARGS)
{
	LOCAL_FCINFO(inner, 5);
	Datum		result;

	InitFunctionCallInfoData(*inner, fcinfo->flinfo, 5, fcinfo->fncollation,
							 fcinfo->context, NULL);
	for (int i = 0; i < 4; i++)
	{
		inner->args[i].value = fcinfo->args[i].value;
		inner->args[i].isnull = fcinfo->args[i].isnull;
	}
	inner->args[4].value = (Datum) 0;
	inner->args[4].isnull = true;
	result = forecast_agg_transfn(inner);
	fcinfo->isnull = inner->isnull;
	return result;
}

/* Error context: which series of a forecast_table source failed. */
static void
forecast_table_errcontext(void *arg)
{
	const char *const *series = arg;

	if (*series)
		errcontext("forecasting series \"%s\"", *series);
}

/*
 * Receiver of the (series, history) rows of forecast_table's source
 * query. The executor hands it each row as the query produces it, so the
 * query runs to completion in one call (which lets the planner use parallel
 * workers, unlike a cursor), and only one batch of windows is ever held.
 */
typedef struct ForecastReceiver
{
	DestReceiver pub;
	ForecastRequest *req;
	ForecastBatch *batch;
	ReturnSetInfo *rsinfo;
	bool		sort_output;	/* whether the output needs sorting */
	Tuplesortstate *sorter;		/* sorts the output, once started */
	MemoryContext call_context; /* owns the batch and the result rows */
	MemoryContext row_context;	/* reset after each source row */
	int64		skipped;		/* series with too few points */
	char	   *skipped_example;	/* the first of them, in call_context */
	const char *current_series; /* for the error context */
	ErrorContextCallback *own_errcontext;	/* forecast_table's error context */
} ForecastReceiver;

/*
 * Start sorting forecast_table's output by series, then step. The output
 * has horizon rows per series, far less than the histories an ORDER BY in
 * the source query would sort. Series compare in the series column's
 * collation, NULL last.
 */
static void
forecast_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ForecastReceiver *r = (ForecastReceiver *) self;
	AttrNumber	columns[2] = {1, 2};
	Oid			operators[2];
	Oid			collations[2];
	bool		nulls_first[2] = {false, false};
	MemoryContext old;

	if (!r->sort_output || r->sorter != NULL)
		return;
	operators[0] = lookup_type_cache(TEXTOID, TYPECACHE_LT_OPR)->lt_opr;
	operators[1] = lookup_type_cache(INT4OID, TYPECACHE_LT_OPR)->lt_opr;
	collations[0] = TupleDescAttr(typeinfo, 0)->attcollation;
	collations[1] = InvalidOid;
	old = MemoryContextSwitchTo(r->call_context);
	r->sorter = tuplesort_begin_heap(r->rsinfo->setDesc, 2, columns, operators, collations,
									 nulls_first, work_mem, NULL, TUPLESORT_NONE);
	MemoryContextSwitchTo(old);
}

static void
forecast_receiver_shutdown(DestReceiver *self)
{
}

static void
forecast_receiver_destroy(DestReceiver *self)
{
}

/*
 * Add one source row to the batch; run and emit the batch when it is full.
 * Everything but the batch itself is allocated in the row context, which is
 * reset after each row, so memory does not grow with the number of series.
 */
static bool
forecast_receive_slot(TupleTableSlot *slot, DestReceiver *self)
{
	ForecastReceiver *r = (ForecastReceiver *) self;
	bool		series_null;
	bool		history_null;
	Datum		series_datum = slot_getattr(slot, 1, &series_null);
	Datum		history_datum = slot_getattr(slot, 2, &history_null);
	MemoryContext old = MemoryContextSwitchTo(r->row_context);
	ErrorContextCallback *executor_errcontext = error_context_stack;
	TstSeries  *history;

	/*
	 * An error about a series names the series. The context lines of the
	 * source query would only repeat its text, so they are left out.
	 */
	error_context_stack = r->own_errcontext;
	CHECK_FOR_INTERRUPTS();
	r->current_series = series_null ? NULL : TextDatumGetCString(series_datum);
	if (!history_null)			/* NULL when every value of the series was */
	{
		history = DatumGetTstSeriesP(history_datum);
		if (!add_history(r->batch, r->req, history, r->current_series, true) &&
			r->skipped++ == 0)
			r->skipped_example = MemoryContextStrdup(r->call_context,
													 r->current_series ? r->current_series : "NULL");
	}
	r->current_series = NULL;
	if (r->batch->count == r->batch->capacity)
	{
		run_batch(r->batch, r->req);
		emit_batch(r->batch, r->req, r->rsinfo, true, r->sorter);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(r->row_context);
	error_context_stack = executor_errcontext;
	return true;
}

/*
 * tst.forecast_table(model, source, time_column, value_column,
 *					  series_column, horizon, confidence)
 *		Forecast every series of a source. Series with fewer points than a
 *		forecast needs are skipped with one NOTICE that counts them.
 */
Datum
forecast_table(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ForecastRequest req;
	ForecastBatch batch;
	ForecastReceiver receiver;
	SPIExecuteOptions options;
	char	   *query;
	SPIPlanPtr	plan;
	int			status;
	ErrorContextCallback errcallback;
	MemoryContext call_context = CurrentMemoryContext;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < 4; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %s must not be NULL",
							(const char *[]) {"model", "source", "time_column", "value_column"}[i])));

	init_request(&req, text_to_cstring(PG_GETARG_TEXT_PP(0)),
				 PG_ARGISNULL(5), PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5),
				 PG_ARGISNULL(6), PG_ARGISNULL(6) ? 0.0 : PG_GETARG_FLOAT8(6));
	query = tst_source_history_query(text_to_cstring(PG_GETARG_TEXT_PP(1)),
									 text_to_cstring(PG_GETARG_TEXT_PP(2)),
									 text_to_cstring(PG_GETARG_TEXT_PP(3)),
									 PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)));
	init_batch(&batch, tst_model_config(req.loaded->model), FORECAST_BATCH);

	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = forecast_receive_slot;
	receiver.pub.rStartup = forecast_receiver_startup;
	receiver.pub.rShutdown = forecast_receiver_shutdown;
	receiver.pub.rDestroy = forecast_receiver_destroy;
	receiver.pub.mydest = DestNone;
	receiver.req = &req;
	receiver.batch = &batch;
	receiver.rsinfo = rsinfo;
	receiver.sort_output = !PG_ARGISNULL(4);
	receiver.call_context = call_context;
	receiver.row_context = AllocSetContextCreate(call_context, "tst forecast_table row",
												 ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * The source query may use parallel workers, unless this call already
	 * runs inside a parallel query.
	 */
	plan = SPI_prepare_cursor(query, 0, NULL,
							  IsInParallelMode() ? 0 : CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "preparing the source query failed: %s",
			 SPI_result_code_string(SPI_result));

	errcallback.callback = forecast_table_errcontext;
	errcallback.arg = (void *) &receiver.current_series;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	receiver.own_errcontext = &errcallback;

	memset(&options, 0, sizeof(options));
	options.read_only = true;
	options.dest = &receiver.pub;
	status = SPI_execute_plan_extended(plan, &options);
	if (status < 0)
		elog(ERROR, "running the source query failed: %s", SPI_result_code_string(status));

	error_context_stack = errcallback.previous;
	SPI_finish();

	/* The last, partial batch, then the sorted rows into the result. */
	run_batch(&batch, &req);
	emit_batch(&batch, &req, rsinfo, true, receiver.sorter);
	if (receiver.sorter != NULL)
	{
		TupleTableSlot *slot = MakeSingleTupleTableSlot(rsinfo->setDesc, &TTSOpsMinimalTuple);

		tuplesort_performsort(receiver.sorter);
		while (tuplesort_gettupleslot(receiver.sorter, true, false, slot, NULL))
		{
			CHECK_FOR_INTERRUPTS();
			tuplestore_puttupleslot(rsinfo->setResult, slot);
		}
		ExecDropSingleTupleTableSlot(slot);
		tuplesort_end(receiver.sorter);
	}

	if (receiver.skipped > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " series with fewer than %d observed points in the last %d steps, such as \"%s\"",
						receiver.skipped, req.min_points,
						tst_model_config(req.loaded->model)->context,
						receiver.skipped_example),
				 errdetail("A forecast needs at least %d observed points among the last %d steps of a history.",
						   req.min_points, tst_model_config(req.loaded->model)->context)));
	return (Datum) 0;
}
