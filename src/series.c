/*
 * series.c
 *		The tst.series type: text and binary I/O and the SQL helpers.
 *
 * The text form is a JSON-like object of quoted timestamptz keys and float8
 * values, for example {"2012-01-01 00:00:00+00": 12.8}. Timestamps go
 * through timestamptz_in and timestamptz_out, so they follow DateStyle and
 * TimeZone like any timestamptz. Values go through the float8 routines, so
 * extra_float_digits applies and the default output round-trips.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "series.h"
#include "series_parse.h"

PG_FUNCTION_INFO_V1(series_in);
PG_FUNCTION_INFO_V1(series_out);
PG_FUNCTION_INFO_V1(series_recv);
PG_FUNCTION_INFO_V1(series_send);
PG_FUNCTION_INFO_V1(series_length);
PG_FUNCTION_INFO_V1(series_start);
PG_FUNCTION_INFO_V1(series_end);
PG_FUNCTION_INFO_V1(series_step);
PG_FUNCTION_INFO_V1(series_unnest);
PG_FUNCTION_INFO_V1(series_window);

/* Check for cancellation once per this many points in long loops. */
#define TST_INTERRUPT_INTERVAL 65536

TstSeries *
tst_series_alloc(int32 count)
{
	TstSeries  *s;

	tst_series_check_count(count);
	s = palloc0(TST_SERIES_SIZE(count));
	SET_VARSIZE(s, TST_SERIES_SIZE(count));
	s->count = count;
	s->version = TST_SERIES_VERSION;
	return s;
}

void
tst_series_check_count(int64 count)
{
	if (count > TST_SERIES_MAX_POINTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("number of points in tst.series (" INT64_FORMAT ") exceeds the maximum allowed (%d)",
						count, TST_SERIES_MAX_POINTS)));
}

void
tst_series_check_timestamp(TimestampTz ts)
{
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp %s is not allowed in tst.series",
						TIMESTAMP_IS_NOBEGIN(ts) ? "-infinity" : "infinity"),
				 errdetail("A series can contain only finite timestamps.")));
}

/* qsort comparator: by timestamp, then by value with NaN after all numbers. */
static int
point_cmp(const void *a, const void *b)
{
	const TstPoint *pa = a;
	const TstPoint *pb = b;

	if (pa->ts != pb->ts)
		return pa->ts < pb->ts ? -1 : 1;
	if (isnan(pa->value))
		return isnan(pb->value) ? 0 : 1;
	if (isnan(pb->value))
		return -1;
	if (pa->value != pb->value)
		return pa->value < pb->value ? -1 : 1;
	return 0;
}

/*
 * Mean of the non-NaN values in run[0 .. n - 1], or NaN when there are none.
 * Summing value / k keeps the sum finite for finite inputs, and because the
 * run is sorted by value the result does not depend on the input row order.
 */
static float8
merge_duplicates(const TstPoint *run, int64 n)
{
	int64		k = 0;
	float8		sum = 0.0;

	for (int64 i = 0; i < n; i++)
		if (!isnan(run[i].value))
			k++;
	if (k == 0)
		return get_float8_nan();
	for (int64 i = 0; i < n; i++)
		if (!isnan(run[i].value))
			sum += run[i].value / (float8) k;
	return sum;
}

TstSeries *
tst_series_from_points(TstPoint *points, int64 count)
{
	TstSeries  *s;
	TimestampTz *ts;
	float8	   *values;
	int64		unique = 0;
	int64		i;

	tst_series_check_count(count);
	if (count > 1)
		qsort(points, count, sizeof(TstPoint), point_cmp);

	for (i = 0; i < count; i++)
		if (i == 0 || points[i].ts != points[i - 1].ts)
			unique++;

	s = tst_series_alloc((int32) unique);
	ts = TST_SERIES_TS(s);
	values = TST_SERIES_VALUES(s);

	unique = 0;
	i = 0;
	while (i < count)
	{
		int64		run = 1;

		if ((i % TST_INTERRUPT_INTERVAL) == 0)
			CHECK_FOR_INTERRUPTS();
		while (i + run < count && points[i + run].ts == points[i].ts)
			run++;
		ts[unique] = points[i].ts;
		values[unique] = run == 1 ? points[i].value : merge_duplicates(points + i, run);
		unique++;
		i += run;
	}
	return s;
}

/* Report malformed text input; pos points at the offending character. */
static void
pg_attribute_noreturn()
series_syntax_error(const char *input, const char *pos, const char *expected)
{
	int			position = (int) (pos - input) + 1;

	if (*pos == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type tst.series: \"%s\"", input),
				 errdetail("Expected %s at position %d, but the input ended.",
						   expected, position)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type tst.series: \"%s\"", input),
			 errdetail("Expected %s at position %d, found \"%c\".",
					   expected, position, *pos)));
}

/* Convert the quoted timestamp of a token with timestamptz_in. */
static TimestampTz
parse_timestamp(const TstSeriesToken *token)
{
	char	   *text = pnstrdup(token->timestamp, token->timestamp_len);
	TimestampTz ts;

	ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
												 CStringGetDatum(text),
												 ObjectIdGetDatum(InvalidOid),
												 Int32GetDatum(-1)));
	tst_series_check_timestamp(ts);
	pfree(text);
	return ts;
}

/* Convert the value token of a token with the float8 input routine. */
static float8
parse_value(const char *input, const TstSeriesToken *token)
{
	char	   *text = pnstrdup(token->value, token->value_len);
	char	   *end;
	bool		have_error = false;
	float8		value;

	value = float8in_internal_opt_error(text, &end, "double precision",
										text, &have_error);
	if (have_error || *end != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type tst.series: \"%s\"", input),
				 errdetail("Expected a float8 value at position %d, found \"%s\".",
						   (int) (token->value - input) + 1, text)));
	pfree(text);
	return value;
}

/*
 * series_in
 *		Parse {"timestamp": value, ...} in any timestamp order; the points are
 *		sorted and duplicate timestamps merged as tst.series_agg does. The
 *		structure is scanned by series_parse.c, which test/fuzz exercises.
 */
Datum
series_in(PG_FUNCTION_ARGS)
{
	char	   *input = PG_GETARG_CSTRING(0);
	TstSeriesScanner scanner;
	TstSeriesToken token;
	TstScanResult result;
	TstPoint   *points;
	int64		count = 0;
	int64		capacity = 16;

	tst_series_scan_init(&scanner, input);
	points = palloc(capacity * sizeof(TstPoint));
	while ((result = tst_series_scan_next(&scanner, &token)) == TST_SCAN_POINT)
	{
		if (count == capacity)
		{
			tst_series_check_count(capacity * 2);
			capacity *= 2;
			points = repalloc(points, capacity * sizeof(TstPoint));
		}
		points[count].ts = parse_timestamp(&token);
		points[count].value = parse_value(input, &token);
		count++;
	}
	if (result == TST_SCAN_ERROR)
		series_syntax_error(input, scanner.error_pos, scanner.expected);

	PG_RETURN_TST_SERIES_P(tst_series_from_points(points, count));
}

/*
 * series_out
 *		Print the series as {"timestamp": value, ...} in timestamp order.
 */
Datum
series_out(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);
	TimestampTz *ts = TST_SERIES_TS(s);
	float8	   *values = TST_SERIES_VALUES(s);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int32 i = 0; i < s->count; i++)
	{
		char	   *tstext;
		char	   *valtext;

		if ((i % TST_INTERRUPT_INTERVAL) == 0)
			CHECK_FOR_INTERRUPTS();
		tstext = DatumGetCString(DirectFunctionCall1(timestamptz_out,
													 TimestampTzGetDatum(ts[i])));
		valtext = float8out_internal(values[i]);
		appendStringInfo(&buf, "%s\"%s\": %s", i > 0 ? ", " : "", tstext, valtext);
		pfree(tstext);
		pfree(valtext);
	}
	appendStringInfoChar(&buf, '}');
	PG_RETURN_CSTRING(buf.data);
}

/*
 * series_recv
 *		Read int32 count, then count pairs of int64 timestamp and float8
 *		value. Timestamps must be finite and strictly increasing.
 */
Datum
series_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		count = pq_getmsgint(buf, sizeof(int32));
	TstSeries  *s;
	TimestampTz *ts;
	float8	   *values;

	if (count < 0 || count > TST_SERIES_MAX_POINTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid point count in external tst.series value: %d", count)));
	if ((int64) (buf->len - buf->cursor) != (int64) count * (int64) (sizeof(int64) + sizeof(float8)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid length of external tst.series value for %d points: %d bytes",
						count, buf->len - buf->cursor)));

	s = tst_series_alloc(count);
	ts = TST_SERIES_TS(s);
	values = TST_SERIES_VALUES(s);
	for (int32 i = 0; i < count; i++)
	{
		ts[i] = (TimestampTz) pq_getmsgint64(buf);
		values[i] = pq_getmsgfloat8(buf);
		tst_series_check_timestamp(ts[i]);
		if (i > 0 && ts[i] <= ts[i - 1])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("timestamps in external tst.series value are not strictly increasing at point %d",
							i + 1)));
	}
	pq_getmsgend(buf);
	PG_RETURN_TST_SERIES_P(s);
}

/*
 * series_send
 *		Write the format that series_recv reads.
 */
Datum
series_send(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);
	TimestampTz *ts = TST_SERIES_TS(s);
	float8	   *values = TST_SERIES_VALUES(s);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint32(&buf, s->count);
	for (int32 i = 0; i < s->count; i++)
	{
		pq_sendint64(&buf, ts[i]);
		pq_sendfloat8(&buf, values[i]);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
series_length(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);

	PG_RETURN_INT32(s->count);
}

/* First timestamp, or NULL for the empty series. */
Datum
series_start(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);

	if (s->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(TST_SERIES_TS(s)[0]);
}

/* Last timestamp, or NULL for the empty series. */
Datum
series_end(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);

	if (s->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(TST_SERIES_TS(s)[s->count - 1]);
}

/* Sampling step that the forecast functions would use for this history. */
Datum
series_step(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);
	Interval   *step = palloc(sizeof(Interval));

	tst_series_detect_step(s, step);
	PG_RETURN_INTERVAL_P(step);
}

/*
 * series_unnest
 *		Return the points as rows (ts, value) in timestamp order.
 *
 * Materialize mode is safe for any size because the tuplestore spills to
 * disk beyond work_mem.
 */
Datum
series_unnest(PG_FUNCTION_ARGS)
{
	TstSeries  *s = PG_GETARG_TST_SERIES_P(0);
	TimestampTz *ts = TST_SERIES_TS(s);
	float8	   *values = TST_SERIES_VALUES(s);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int32 i = 0; i < s->count; i++)
	{
		Datum		row[2];
		bool		nulls[2] = {false, false};

		if ((i % TST_INTERRUPT_INTERVAL) == 0)
			CHECK_FOR_INTERRUPTS();
		row[0] = TimestampTzGetDatum(ts[i]);
		row[1] = Float8GetDatum(values[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	return (Datum) 0;
}

/*
 * series_window
 *		Return the last context values of the series on its step grid, as the
 *		forecast functions feed them to a model. The step argument may be
 *		NULL, and then the detected step is used.
 */
Datum
series_window(PG_FUNCTION_ARGS)
{
	TstSeries  *s;
	int32		context;
	Interval	step;
	float8	   *out;
	Datum	   *elems;
	ArrayType  *result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	s = PG_GETARG_TST_SERIES_P(0);
	context = PG_GETARG_INT32(1);
	if (context < 1 || context > TST_SERIES_MAX_POINTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be between 1 and %d, not %d",
						TST_SERIES_MAX_POINTS, context)));

	if (PG_ARGISNULL(2))
		tst_series_detect_step(s, &step);
	else
		step = *PG_GETARG_INTERVAL_P(2);

	out = palloc(context * sizeof(float8));
	tst_series_to_window(s, &step, context, 1, out);

	elems = palloc(context * sizeof(Datum));
	for (int32 i = 0; i < context; i++)
		elems[i] = Float8GetDatum(out[i]);
	result = construct_array(elems, context, FLOAT8OID, sizeof(float8),
							 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	PG_RETURN_ARRAYTYPE_P(result);
}
