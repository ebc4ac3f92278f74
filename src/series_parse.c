/*
 * series_parse.c
 *		Structure of the tst.series text form and of the serialized
 *		aggregate state, in plain C (see series_parse.h).
 */
#include "series_parse.h"

#include <string.h>

/* Scanner states. */
enum
{
	SCAN_START,					/* before "{" */
	SCAN_FIRST,					/* after "{": a point or "}" */
	SCAN_NEXT,					/* after a point: "," or "}" */
	SCAN_DONE,					/* the end was returned */
	SCAN_FAILED					/* an error was returned */
};

/* The characters that the PostgreSQL lexer (scanner_isspace) skips. */
static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static const char *
skip_space(const char *p)
{
	while (is_space(*p))
		p++;
	return p;
}

static TstScanResult
scan_error(TstSeriesScanner *scanner, const char *pos, const char *expected)
{
	scanner->state = SCAN_FAILED;
	scanner->error_pos = pos;
	scanner->expected = expected;
	return TST_SCAN_ERROR;
}

void
tst_series_scan_init(TstSeriesScanner *scanner, const char *input)
{
	scanner->input = input;
	scanner->pos = input;
	scanner->state = SCAN_START;
	scanner->error_pos = NULL;
	scanner->expected = NULL;
}

/* After the closing "}" only whitespace may follow. */
static TstScanResult
scan_end(TstSeriesScanner *scanner, const char *p)
{
	p = skip_space(p + 1);
	if (*p != '\0')
		return scan_error(scanner, p, "the end of input after \"}\"");
	scanner->pos = p;
	scanner->state = SCAN_DONE;
	return TST_SCAN_END;
}

/* Scan "timestamp": value at p. */
static TstScanResult
scan_point(TstSeriesScanner *scanner, const char *p, TstSeriesToken *token)
{
	const char *start;

	if (*p != '"')
		return scan_error(scanner, p, "a double-quoted timestamp");
	start = ++p;
	while (*p != '"' && *p != '\0')
		p++;
	if (*p == '\0')
		return scan_error(scanner, p, "a closing double quote");
	token->timestamp = start;
	token->timestamp_len = (size_t) (p - start);

	p = skip_space(p + 1);
	if (*p != ':')
		return scan_error(scanner, p, "\":\" after the timestamp");
	p = skip_space(p + 1);

	start = p;
	while (*p != '\0' && *p != ',' && *p != '}' && !is_space(*p))
		p++;
	if (p == start)
		return scan_error(scanner, p, "a float8 value");
	token->value = start;
	token->value_len = (size_t) (p - start);

	scanner->pos = p;
	scanner->state = SCAN_NEXT;
	return TST_SCAN_POINT;
}

TstScanResult
tst_series_scan_next(TstSeriesScanner *scanner, TstSeriesToken *token)
{
	const char *p = skip_space(scanner->pos);

	switch (scanner->state)
	{
		case SCAN_START:
			if (*p != '{')
				return scan_error(scanner, p, "\"{\"");
			p = skip_space(p + 1);
			if (*p == '}')
				return scan_end(scanner, p);
			return scan_point(scanner, p, token);
		case SCAN_NEXT:
			if (*p == '}')
				return scan_end(scanner, p);
			if (*p != ',')
				return scan_error(scanner, p, "\",\" or \"}\"");
			return scan_point(scanner, skip_space(p + 1), token);
		case SCAN_DONE:
			return TST_SCAN_END;
		default:
			return TST_SCAN_ERROR;
	}
}

static uint32_t
get_u32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static uint64_t
get_u64(const uint8_t *p)
{
	return ((uint64_t) get_u32(p) << 32) | get_u32(p + 4);
}

const char *
tst_state_parse(const uint8_t *data, size_t len, int32_t max_points,
				TstStateLayout *layout)
{
	size_t		pos = 0;
	int32_t		count;

	memset(layout, 0, sizeof(*layout));

	/* flags */
	if (len - pos < 4)
		return "The state ends before its flags word.";
	layout->flags = get_u32(data + pos);
	pos += 4;
	if ((layout->flags & ~(uint32_t) TST_STATE_KNOWN_FLAGS) != 0 ||
		((layout->flags & TST_STATE_HAS_HORIZON) && !(layout->flags & TST_STATE_HAS_MODEL)))
		return "The flags word is not valid.";

	/* model */
	if (layout->flags & TST_STATE_HAS_MODEL)
	{
		if (len - pos < 4)
			return "The state ends before the model name length.";
		layout->model_len = (int32_t) get_u32(data + pos);
		pos += 4;
		if (layout->model_len < 0 || (size_t) layout->model_len > len - pos)
			return "The model name length is out of range.";
		layout->model_offset = pos;
		pos += (size_t) layout->model_len;
	}

	/* horizon */
	if (len - pos < 4)
		return "The state ends before the horizon.";
	layout->horizon = (layout->flags & TST_STATE_HAS_HORIZON) ? (int32_t) get_u32(data + pos) : 0;
	pos += 4;

	/* count, then the points */
	if (len - pos < 4)
		return "The state ends before the point count.";
	count = (int32_t) get_u32(data + pos);
	pos += 4;
	if (count < 0 || count > max_points ||
		(uint64_t) (len - pos) != (uint64_t) count * TST_STATE_POINT_BYTES)
		return "The point count does not match the length of the state.";
	layout->count = count;
	layout->points_offset = pos;

	for (int32_t i = 0; i < count; i++)
	{
		int64_t		ts = (int64_t) get_u64(data + pos + (size_t) i * TST_STATE_POINT_BYTES);

		/* PostgreSQL's -infinity and infinity timestamps. */
		if (ts == INT64_MIN || ts == INT64_MAX)
			return "A timestamp is not finite.";
	}
	return NULL;
}

void
tst_state_point(const uint8_t *data, const TstStateLayout *layout, int32_t i,
				int64_t *ts, double *value)
{
	const uint8_t *p = data + layout->points_offset + (size_t) i * TST_STATE_POINT_BYTES;
	uint64_t	bits = get_u64(p + 8);

	*ts = (int64_t) get_u64(p);
	memcpy(value, &bits, sizeof(*value));
}
