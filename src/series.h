/*
 * series.h
 *		The tst.series type, the state of tst.series_agg and tst.forecast_agg,
 *		and the time-step logic that the forecast functions use.
 *
 * A tst.series is a varlena containing points sorted by strictly increasing,
 * finite timestamps. Values are float8; NaN marks a missing value and
 * infinities are stored as given. The rules are documented in
 * docs/series.md.
 */
#ifndef TST_SERIES_H
#define TST_SERIES_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/memutils.h"

/* On-disk format version stored in every series. */
#define TST_SERIES_VERSION 1

/*
 * The varlena layout: a 16-byte header, then TimestampTz ts[count], then
 * float8 values[count]. The header size keeps both arrays 8-byte aligned.
 */
typedef struct TstSeries
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	int32		count;			/* number of points */
	uint16		version;		/* TST_SERIES_VERSION */
	uint16		flags;			/* reserved, always 0 */
	int32		unused;			/* always 0 */
	TimestampTz ts[FLEXIBLE_ARRAY_MEMBER];	/* count timestamps, ascending */
	/* float8 values[count] follow the timestamps */
} TstSeries;

#define TST_SERIES_HEADER_SIZE offsetof(TstSeries, ts)
#define TST_SERIES_SIZE(count) \
	(TST_SERIES_HEADER_SIZE + (Size) (count) * (sizeof(TimestampTz) + sizeof(float8)))

/* Largest point count whose series, state array or sort buffer fits in MaxAllocSize. */
#define TST_SERIES_MAX_POINTS \
	((int32) ((MaxAllocSize - TST_SERIES_HEADER_SIZE) / (sizeof(TimestampTz) + sizeof(float8))))

#define TST_SERIES_TS(s)		((s)->ts)
#define TST_SERIES_VALUES(s)	((float8 *) ((s)->ts + (s)->count))

#define DatumGetTstSeriesP(X)	((TstSeries *) PG_DETOAST_DATUM(X))
#define PG_GETARG_TST_SERIES_P(n) DatumGetTstSeriesP(PG_GETARG_DATUM(n))
#define PG_RETURN_TST_SERIES_P(x) PG_RETURN_POINTER(x)

/* One (timestamp, value) pair, as collected before sorting. */
typedef struct TstPoint
{
	TimestampTz ts;
	float8		value;
} TstPoint;

/* Allocate a zeroed series of count points in CurrentMemoryContext. */
extern TstSeries *tst_series_alloc(int32 count);

/*
 * Build a series from unsorted points: sort by timestamp and merge duplicate
 * timestamps into the mean of their non-NaN values. Sorts points in place.
 */
extern TstSeries *tst_series_from_points(TstPoint *points, int64 count);

/* Raise an error unless ts is finite. */
extern void tst_series_check_timestamp(TimestampTz ts);

/* Raise ERRCODE_PROGRAM_LIMIT_EXCEEDED when count exceeds TST_SERIES_MAX_POINTS. */
extern void tst_series_check_count(int64 count);

/*
 * Aggregate state shared by tst.series_agg and tst.forecast_agg. It lives in
 * the aggregate memory context; its fields are private to series_agg.c.
 */
typedef struct TstSeriesState TstSeriesState;

/*
 * Sort and deduplicate the points of an aggregate state into a new series
 * in CurrentMemoryContext. Returns NULL when state is NULL or contains no
 * points. The state is not modified, so a final function may call this
 * more than once.
 */
extern TstSeries *tst_series_state_finish(const TstSeriesState *state);

/* Model name given to tst.forecast_agg, or NULL for a tst.series_agg state. */
extern const text *tst_series_state_model(const TstSeriesState *state);

/*
 * Store the horizon given to tst.forecast_agg in *horizon and return true,
 * or return false when the horizon argument was NULL (or state is NULL).
 */
extern bool tst_series_state_horizon(const TstSeriesState *state, int32 *horizon);

/*
 * Detect the sampling step of s from the median of its last (up to 1000)
 * consecutive differences: 1, 3 or 12 months, a whole number of days, or a
 * fixed number of microseconds. Raises an error when s has fewer than 2
 * points.
 */
extern void tst_series_detect_step(const TstSeries *s, Interval *step);

/* Index of the first of ts[0 .. n - 1] (ascending) that is >= bound, or n. */
extern int	tst_series_lower_bound(const TimestampTz *ts, int n, TimestampTz bound);

/* Return t + k * step in timestamptz arithmetic (session TimeZone). */
extern TimestampTz tst_step_add(TimestampTz t, const Interval *step, int k);

/*
 * Regularize the tail of s onto the context-slot grid that ends at the last
 * timestamp, writing context values to out[0 .. context - 1] (oldest first).
 * Gaps are interpolated and the front is padded. Returns the number of
 * observed slots. Raises an error when a value in the window is infinite,
 * and when fewer than min_points slots are observed. With min_points <= 0 a
 * short window raises nothing: the count is returned and out is not filled.
 */
extern int	tst_series_to_window(const TstSeries *s, const Interval *step,
								 int context, int min_points, double *out);

#endif							/* TST_SERIES_H */
