/*
 * series_agg.c
 *		The internal-state support functions of tst.series_agg, and the
 *		transition function of tst.forecast_agg that shares the same state.
 *
 * The state collects raw (timestamp, value) points in arrival order in an
 * array that doubles when full, all in the aggregate memory context. Sorting
 * and merging of duplicate timestamps happen only when the result is built
 * (tst_series_state_finish), on a copy, so the final function leaves the
 * state untouched and may run more than once. Because the final step reads
 * every raw point, the result does not depend on row order or on how a
 * parallel plan splits the rows into partial states.
 *
 * tst.forecast_agg also records its model name and horizon in the state.
 * They must be the same on every row of a group; combine checks that two
 * partial states agree.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "series.h"
#include "series_parse.h"

PG_FUNCTION_INFO_V1(series_agg_transfn);
PG_FUNCTION_INFO_V1(series_agg_finalfn);
PG_FUNCTION_INFO_V1(series_agg_combinefn);
PG_FUNCTION_INFO_V1(series_agg_serialfn);
PG_FUNCTION_INFO_V1(series_agg_deserialfn);
PG_FUNCTION_INFO_V1(forecast_agg_transfn);

/* Initial capacity of the point array, in points. */
#define STATE_INITIAL_CAPACITY 64

/* Flag bits of the serialized state, shared with tst_state_parse. */
#define STATE_HAS_MODEL		TST_STATE_HAS_MODEL
#define STATE_HAS_HORIZON	TST_STATE_HAS_HORIZON

struct TstSeriesState
{
	int64		count;			/* points collected */
	int64		capacity;		/* allocated length of points */
	TstPoint   *points;			/* points in arrival order */
	text	   *model;			/* forecast_agg model name, or NULL */
	bool		has_horizon;	/* false when the horizon argument was NULL */
	int32		horizon;		/* forecast_agg horizon, valid if has_horizon */
};

/* Return the aggregate memory context, or raise an error outside aggregates. */
static MemoryContext
state_context(FunctionCallInfo fcinfo, const char *caller)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "%s called in non-aggregate context", caller);
	return aggcontext;
}

static TstSeriesState *
state_create(MemoryContext context)
{
	return MemoryContextAllocZero(context, sizeof(TstSeriesState));
}

/* Make room for at least needed points, growing geometrically. */
static void
state_reserve(TstSeriesState *state, MemoryContext context, int64 needed)
{
	int64		capacity;

	if (needed <= state->capacity)
		return;
	tst_series_check_count(needed);

	capacity = Max(state->capacity, STATE_INITIAL_CAPACITY);
	while (capacity < needed)
		capacity *= 2;
	capacity = Min(capacity, (int64) TST_SERIES_MAX_POINTS);

	if (state->points == NULL)
		state->points = MemoryContextAlloc(context, capacity * sizeof(TstPoint));
	else
		state->points = repalloc(state->points, capacity * sizeof(TstPoint));
	state->capacity = capacity;
}

static void
state_add(TstSeriesState *state, MemoryContext context, TimestampTz ts, float8 value)
{
	tst_series_check_timestamp(ts);
	state_reserve(state, context, state->count + 1);
	state->points[state->count].ts = ts;
	state->points[state->count].value = value;
	state->count++;
}

/* Append src's points to dst; dst's array lives in context. */
static void
state_append(TstSeriesState *dst, MemoryContext context, const TstSeriesState *src)
{
	if (src->count == 0)
		return;
	state_reserve(dst, context, dst->count + src->count);
	memcpy(dst->points + dst->count, src->points, src->count * sizeof(TstPoint));
	dst->count += src->count;
}

static bool
model_equal(const text *a, const text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * Record the forecast_agg arguments in state on the first call and check that
 * later calls (or another partial state) pass the same ones.
 */
static void
state_set_forecast_args(TstSeriesState *state, MemoryContext context,
						const text *model, bool has_horizon, int32 horizon)
{
	if (state->model == NULL)
	{
		Size		size = VARSIZE_ANY_EXHDR(model);

		state->model = MemoryContextAlloc(context, VARHDRSZ + size);
		SET_VARSIZE(state->model, VARHDRSZ + size);
		memcpy(VARDATA(state->model), VARDATA_ANY(model), size);
		state->has_horizon = has_horizon;
		state->horizon = horizon;
		return;
	}

	if (!model_equal(state->model, model))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must be the same on every row of a group: \"%s\" and \"%s\"",
						text_to_cstring(state->model), text_to_cstring(model))));
	if (state->has_horizon != has_horizon ||
		(has_horizon && state->horizon != horizon))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("horizon must be the same on every row of a group: %s and %s",
						state->has_horizon ? psprintf("%d", state->horizon) : "NULL",
						has_horizon ? psprintf("%d", horizon) : "NULL")));
}

/*
 * series_agg_transfn
 *		Add one row; rows with a NULL timestamp or value are skipped.
 */
Datum
series_agg_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext context = state_context(fcinfo, "series_agg_transfn");
	TstSeriesState *state = PG_ARGISNULL(0) ? NULL : (TstSeriesState *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}

	if (state == NULL)
		state = state_create(context);
	state_add(state, context, PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_FLOAT8(2));
	PG_RETURN_POINTER(state);
}

/*
 * forecast_agg_transfn
 *		Arguments (state, model, ts, value, horizon). Records the model name
 *		and horizon, then adds the point as series_agg_transfn does. The state
 *		exists after the first row even if every point is skipped, so that
 *		the final function can read the model name.
 */
Datum
forecast_agg_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext context = state_context(fcinfo, "forecast_agg_transfn");
	TstSeriesState *state = PG_ARGISNULL(0) ? NULL : (TstSeriesState *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be null")));

	if (state == NULL)
		state = state_create(context);
	state_set_forecast_args(state, context, PG_GETARG_TEXT_PP(1),
							!PG_ARGISNULL(4),
							PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4));

	if (!PG_ARGISNULL(2) && !PG_ARGISNULL(3))
		state_add(state, context, PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_FLOAT8(3));
	PG_RETURN_POINTER(state);
}

/*
 * series_agg_finalfn
 *		Build the series; NULL when no row contributed a point.
 */
Datum
series_agg_finalfn(PG_FUNCTION_ARGS)
{
	TstSeries  *result;

	state_context(fcinfo, "series_agg_finalfn");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	result = tst_series_state_finish((TstSeriesState *) PG_GETARG_POINTER(0));
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TST_SERIES_P(result);
}

/*
 * series_agg_combinefn
 *		Merge two partial states. When the first is NULL the second is copied
 *		into the aggregate context, because it may live in a shorter-lived
 *		context (deserialize allocates in the per-tuple context).
 */
Datum
series_agg_combinefn(PG_FUNCTION_ARGS)
{
	MemoryContext context = state_context(fcinfo, "series_agg_combinefn");
	TstSeriesState *state1 = PG_ARGISNULL(0) ? NULL : (TstSeriesState *) PG_GETARG_POINTER(0);
	TstSeriesState *state2 = PG_ARGISNULL(1) ? NULL : (TstSeriesState *) PG_GETARG_POINTER(1);

	if (state2 == NULL)
	{
		if (state1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state1);
	}

	if (state1 == NULL)
		state1 = state_create(context);
	if (state2->model != NULL)
		state_set_forecast_args(state1, context, state2->model,
								state2->has_horizon, state2->horizon);
	state_append(state1, context, state2);
	PG_RETURN_POINTER(state1);
}

/*
 * series_agg_serialfn
 *		Write the state as a bytea for a parallel worker to send.
 */
Datum
series_agg_serialfn(PG_FUNCTION_ARGS)
{
	TstSeriesState *state = (TstSeriesState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int32		flags = 0;
	Size		model_len = state->model ? VARSIZE_ANY_EXHDR(state->model) : 0;

	state_context(fcinfo, "series_agg_serialfn");
	if ((Size) state->count * sizeof(TstPoint) + model_len + 64 > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("aggregate state of " INT64_FORMAT " points is too large to serialize",
						state->count)));

	if (state->model != NULL)
		flags |= STATE_HAS_MODEL;
	if (state->has_horizon)
		flags |= STATE_HAS_HORIZON;

	pq_begintypsend(&buf);

	/* flags */
	pq_sendint32(&buf, flags);

	/* model: byte length, then the bytes (only with STATE_HAS_MODEL) */
	if (state->model != NULL)
	{
		pq_sendint32(&buf, (int32) model_len);
		pq_sendbytes(&buf, VARDATA_ANY(state->model), (int) model_len);
	}

	/* horizon (0 unless STATE_HAS_HORIZON) */
	pq_sendint32(&buf, state->has_horizon ? state->horizon : 0);

	/* count */
	pq_sendint32(&buf, (int32) state->count);

	/* points: timestamp and value, count times */
	for (int64 i = 0; i < state->count; i++)
	{
		pq_sendint64(&buf, state->points[i].ts);
		pq_sendfloat8(&buf, state->points[i].value);
	}

	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static void
pg_attribute_noreturn()
invalid_state(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid serialized tst.series_agg state"),
			 errdetail("%s", detail)));
}

/*
 * series_agg_deserialfn
 *		Read a state written by series_agg_serialfn, in the current (per-tuple)
 *		memory context. tst_state_parse (series_parse.c, which test/fuzz
 *		exercises) checks every length before anything is copied.
 */
Datum
series_agg_deserialfn(PG_FUNCTION_ARGS)
{
	bytea	   *bytes = PG_GETARG_BYTEA_PP(0);
	const uint8 *data = (const uint8 *) VARDATA_ANY(bytes);
	TstStateLayout layout;
	const char *problem;
	TstSeriesState *state;

	state_context(fcinfo, "series_agg_deserialfn");

	problem = tst_state_parse(data, VARSIZE_ANY_EXHDR(bytes), TST_SERIES_MAX_POINTS, &layout);
	if (problem != NULL)
		invalid_state(problem);

	state = palloc0(sizeof(TstSeriesState));
	if (layout.flags & STATE_HAS_MODEL)
	{
		state->model = palloc(VARHDRSZ + layout.model_len);
		SET_VARSIZE(state->model, VARHDRSZ + layout.model_len);
		memcpy(VARDATA(state->model), data + layout.model_offset, layout.model_len);
	}
	state->has_horizon = (layout.flags & STATE_HAS_HORIZON) != 0;
	state->horizon = layout.horizon;

	state->count = state->capacity = layout.count;
	if (layout.count > 0)
		state->points = palloc(layout.count * sizeof(TstPoint));
	for (int32 i = 0; i < layout.count; i++)
	{
		int64_t		ts;
		double		value;

		tst_state_point(data, &layout, i, &ts, &value);
		state->points[i].ts = ts;
		state->points[i].value = value;
	}
	PG_RETURN_POINTER(state);
}

TstSeries *
tst_series_state_finish(const TstSeriesState *state)
{
	TstPoint   *copy;
	TstSeries  *result;

	if (state == NULL || state->count == 0)
		return NULL;

	/* Sort a copy: the state must stay valid for further final calls. */
	copy = palloc(state->count * sizeof(TstPoint));
	memcpy(copy, state->points, state->count * sizeof(TstPoint));
	result = tst_series_from_points(copy, state->count);
	pfree(copy);
	return result;
}

const text *
tst_series_state_model(const TstSeriesState *state)
{
	return state ? state->model : NULL;
}

bool
tst_series_state_horizon(const TstSeriesState *state, int32 *horizon)
{
	if (state == NULL || !state->has_horizon)
		return false;
	*horizon = state->horizon;
	return true;
}
