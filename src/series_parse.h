/*
 * series_parse.h
 *		Parsers of the tst.series text form and of the serialized aggregate
 *		state, without PostgreSQL headers, so that test/fuzz links them alone.
 *
 * Both parsers only find and check the structure of their input. Converting
 * timestamps and values, and raising errors, is left to the callers in
 * series.c and series_agg.c.
 */
#ifndef TST_SERIES_PARSE_H
#define TST_SERIES_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Scanner over {"timestamp": value, ...}. Whitespace is what the PostgreSQL
 * lexer skips (space, tab, newline, carriage return, form feed).
 */
typedef struct TstSeriesScanner
{
	const char *input;
	const char *pos;			/* next character to read */
	int			state;			/* private to series_parse.c */
	const char *error_pos;		/* on TST_SCAN_ERROR: the offending character */
	const char *expected;		/* on TST_SCAN_ERROR: what should have been there */
} TstSeriesScanner;

/* One point as found in the text: the timestamp between its quotes and the value token. */
typedef struct TstSeriesToken
{
	const char *timestamp;
	size_t		timestamp_len;
	const char *value;
	size_t		value_len;
} TstSeriesToken;

typedef enum TstScanResult
{
	TST_SCAN_POINT,				/* *token holds the next point */
	TST_SCAN_END,				/* the input ended correctly after "}" */
	TST_SCAN_ERROR				/* error_pos and expected describe the error */
} TstScanResult;

void		tst_series_scan_init(TstSeriesScanner *scanner, const char *input);
TstScanResult tst_series_scan_next(TstSeriesScanner *scanner, TstSeriesToken *token);

/* Flag bits of the serialized aggregate state. */
#define TST_STATE_HAS_MODEL		0x01	/* forecast_agg arguments were recorded */
#define TST_STATE_HAS_HORIZON	0x02	/* the horizon argument was not NULL */
#define TST_STATE_KNOWN_FLAGS	(TST_STATE_HAS_MODEL | TST_STATE_HAS_HORIZON)

/* Bytes of one serialized point: an int64 timestamp and a float8 value. */
#define TST_STATE_POINT_BYTES 16

/*
 * Where the parts of a serialized state are. All integers are big-endian,
 * as pq_sendint32 and pq_sendint64 write them:
 *   int32 flags
 *   int32 model length and the model bytes (only with TST_STATE_HAS_MODEL)
 *   int32 horizon (0 unless TST_STATE_HAS_HORIZON)
 *   int32 count, then count points of int64 timestamp and float8 value
 */
typedef struct TstStateLayout
{
	uint32_t	flags;
	size_t		model_offset;
	int32_t		model_len;		/* 0 without TST_STATE_HAS_MODEL */
	int32_t		horizon;
	int32_t		count;
	size_t		points_offset;
} TstStateLayout;

/*
 * Check a serialized state of len bytes: flags, every length, the exact total
 * length, at most max_points points, and finite timestamps. Returns NULL and
 * fills layout, or returns a sentence that describes the first problem.
 */
const char *tst_state_parse(const uint8_t *data, size_t len, int32_t max_points,
							TstStateLayout *layout);

/* Read point i of a state that tst_state_parse accepted. */
void		tst_state_point(const uint8_t *data, const TstStateLayout *layout, int32_t i,
							int64_t *ts, double *value);

#endif							/* TST_SERIES_PARSE_H */
