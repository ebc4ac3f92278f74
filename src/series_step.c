/*
 * series_step.c
 *		Sampling-step detection and regularization of a history onto the
 *		step grid that the forecast functions feed to the model.
 *
 * Both functions read only the tail of the series, so their cost depends on
 * the window size and not on the length of the history:
 *
 * - tst_series_detect_step takes the median of the last (up to
 *   STEP_SAMPLE_SIZE) consecutive differences. Medians near a month, a
 *   quarter or a year become calendar months. A whole number of days becomes
 *   days, so the grid keeps local wall-clock time across daylight-saving
 *   changes in the session TimeZone. Anything else stays a fixed count of
 *   microseconds.
 *
 * - tst_series_to_window builds the grid backwards from the last timestamp
 *   with timestamptz + interval arithmetic, stopping early once it passes
 *   the first point. It binary-searches the first point that falls into the
 *   grid, maps each point to its nearest slot, averages slots that receive
 *   several points and fills the rest by interpolation and padding.
 *
 * docs/series.md states the rules for users.
 */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "series.h"

/* Number of trailing differences whose median gives the step. */
#define STEP_SAMPLE_SIZE 1000

/*
 * Slack around the month, quarter and year ranges: data recorded at local
 * midnight in a zone with daylight-saving time has differences one hour off.
 */
#define STEP_DST_SLACK USECS_PER_HOUR

/* Slot of a window that received no non-NaN value yet. */
#define SLOT_EMPTY (-1)

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* True when usecs lies within [lo_days, hi_days] days, widened by the DST slack. */
static bool
within_days(int64 usecs, int lo_days, int hi_days)
{
	return usecs >= lo_days * USECS_PER_DAY - STEP_DST_SLACK &&
		usecs <= hi_days * USECS_PER_DAY + STEP_DST_SLACK;
}

void
tst_series_detect_step(const TstSeries *s, Interval *step)
{
	const TimestampTz *ts = TST_SERIES_TS(s);
	int			ndiffs;
	int64	   *diffs;
	int64		median;

	if (s->count < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot detect the time step of a series with %d point%s",
						s->count, s->count == 1 ? "" : "s"),
				 errhint("A series needs at least 2 points with distinct timestamps.")));

	ndiffs = Min(s->count - 1, STEP_SAMPLE_SIZE);
	diffs = palloc(ndiffs * sizeof(int64));
	for (int i = 0; i < ndiffs; i++)
	{
		int			j = s->count - ndiffs + i;

		diffs[i] = ts[j] - ts[j - 1];
	}
	qsort(diffs, ndiffs, sizeof(int64), int64_cmp);

	/* The lower median, so the step is always one of the observed differences. */
	median = diffs[(ndiffs - 1) / 2];
	pfree(diffs);

	/* Timestamps are strictly increasing in a valid series, but check anyway. */
	if (median <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time step of the series is " INT64_FORMAT " microseconds", median),
				 errhint("Timestamps must be strictly increasing.")));

	/* NOTE: data exactly every 28 days (four-weekly) is classified as monthly. */
	memset(step, 0, sizeof(Interval));
	if (within_days(median, 28, 31))
		step->month = 1;
	else if (within_days(median, 89, 92))
		step->month = 3;
	else if (within_days(median, 365, 366))
		step->month = 12;
	else if (median % USECS_PER_DAY == 0 && median / USECS_PER_DAY <= PG_INT32_MAX)
		step->day = (int32) (median / USECS_PER_DAY);
	else
		step->time = median;
}

TimestampTz
tst_step_add(TimestampTz t, const Interval *step, int k)
{
	Interval	span;

	if (pg_mul_s32_overflow(step->month, k, &span.month) ||
		pg_mul_s32_overflow(step->day, k, &span.day) ||
		pg_mul_s64_overflow(step->time, k, &span.time))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("interval out of range"),
				 errdetail("The time step multiplied by %d does not fit in an interval.", k)));

	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(t),
												   IntervalPGetDatum(&span)));
}

int
tst_series_lower_bound(const TimestampTz *ts, int n, TimestampTz bound)
{
	int			lo = 0;
	int			hi = n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (ts[mid] < bound)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Midpoint of two timestamps, computed without overflow. */
static TimestampTz
midpoint(TimestampTz a, TimestampTz b)
{
	return a + (b - a) / 2;
}

/*
 * Fill the slots whose count is 0 (gaps) from the observed slots: linear
 * interpolation between the observed neighbours, the first observed value
 * before the first one and the last observed value after the last one.
 */
static void
fill_gaps(double *out, const int *counts, int context)
{
	int			prev = -1;

	for (int j = 0; j < context; j++)
	{
		if (counts[j] == 0)
			continue;
		if (prev < 0)
		{
			for (int g = 0; g < j; g++)
				out[g] = out[j];
		}
		else
		{
			for (int g = prev + 1; g < j; g++)
			{
				double		w = (double) (g - prev) / (double) (j - prev);
				double		rise = out[j] - out[prev];

				/* The weighted form avoids overflow when rise is infinite. */
				if (isinf(rise))
					out[g] = out[prev] * (1.0 - w) + out[j] * w;
				else
					out[g] = out[prev] + rise * w;
			}
		}
		prev = j;
	}
	for (int g = prev + 1; g < context; g++)
		out[g] = out[prev];
}

int
tst_series_to_window(const TstSeries *s, const Interval *step,
					 int context, int min_points, double *out)
{
	const TimestampTz *ts = TST_SERIES_TS(s);
	const float8 *values = TST_SERIES_VALUES(s);
	TimestampTz last;
	TimestampTz *bounds;
	int		   *counts;
	int			first_slot;
	int			first_point;
	int			observed = 0;
	bool		raise_if_short = min_points > 0;

	if (context < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window context must be at least 1, not %d", context)));
	if (step->month < 0 || step->day < 0 || step->time < 0 ||
		(step->month == 0 && step->day == 0 && step->time == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time step must be positive")));
	min_points = Max(min_points, 1);
	if (s->count == 0 && !raise_if_short)
		return 0;
	if (s->count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("series has 0 observed points in the last %d steps, at least %d needed",
						context, min_points),
				 errhint("Provide a longer history.")));

	/*
	 * bounds[j] is the lower edge of slot j: the midpoint between the grid
	 * times of slots j - 1 and j. A point t belongs to slot j when
	 * bounds[j] <= t < bounds[j + 1], so a point halfway between two slots
	 * goes to the later one. Walking back from the last slot, stop at the
	 * first grid time before the first point: no point falls below it, so
	 * the earlier slots are empty and only get padded.
	 */
	last = ts[s->count - 1];
	bounds = palloc(context * sizeof(TimestampTz));
	counts = palloc0(context * sizeof(int));
	first_slot = 0;
	{
		TimestampTz grid = last;

		for (int j = context - 1; j >= 0; j--)
		{
			TimestampTz prev_grid;

			CHECK_FOR_INTERRUPTS();
			if (grid < ts[0])
			{
				bounds[j] = grid;
				first_slot = j;
				break;
			}
			prev_grid = tst_step_add(last, step, j - context);
			bounds[j] = midpoint(prev_grid, grid);
			grid = prev_grid;
		}
	}

	first_point = tst_series_lower_bound(ts, s->count, bounds[first_slot]);

	/* First pass: count the non-NaN points of each slot. */
	for (int i = first_point, j = first_slot; i < s->count; i++)
	{
		while (j + 1 < context && ts[i] >= bounds[j + 1])
			j++;
		if (isinf(values[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("series value at %s is infinite",
							timestamptz_to_str(ts[i])),
					 errhint("Replace infinite values with NaN to mark them as missing.")));
		if (!isnan(values[i]))
			counts[j]++;
	}

	/*
	 * Second pass: average. Adding value / count keeps the sum finite for
	 * any finite values.
	 */
	for (int j = 0; j < context; j++)
		out[j] = 0.0;
	for (int i = first_point, j = first_slot; i < s->count; i++)
	{
		while (j + 1 < context && ts[i] >= bounds[j + 1])
			j++;
		if (!isnan(values[i]))
			out[j] += values[i] / (double) counts[j];
	}

	for (int j = 0; j < context; j++)
		if (counts[j] > 0)
			observed++;
	if (observed < min_points && !raise_if_short)
	{
		pfree(bounds);
		pfree(counts);
		return observed;
	}
	if (observed < min_points)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("series has %d observed point%s in the last %d steps, at least %d needed",
						observed, observed == 1 ? "" : "s", context, min_points),
				 errdetail("NaN values and steps without a point count as gaps."),
				 errhint("Provide a longer history or use a model with a shorter context.")));

	fill_gaps(out, counts, context);
	pfree(bounds);
	pfree(counts);
	return observed;
}
