/*
 * fuzz_state.c
 *		libFuzzer target for the serialized tst.series_agg state parser
 *		(tst_state_parse in series_parse.c).
 *
 * An accepted state must describe parts that lie inside the input and add up
 * to its exact length. Every point of it is read, so AddressSanitizer reports an
 * out-of-bounds offset at once.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "series_parse.h"

/* A small limit, so that count checks are exercised with short inputs. */
#define MAX_POINTS 4096

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	TstStateLayout layout;
	const char *problem = tst_state_parse(data, size, MAX_POINTS, &layout);
	double		sum = 0.0;

	if (problem != NULL)
		return 0;
	if (layout.count < 0 || layout.count > MAX_POINTS || layout.model_len < 0)
		abort();
	if (layout.points_offset + (size_t) layout.count * TST_STATE_POINT_BYTES != size)
		abort();
	if ((layout.flags & TST_STATE_HAS_MODEL) &&
		layout.model_offset + (size_t) layout.model_len > layout.points_offset)
		abort();
	for (int32_t i = 0; i < layout.count; i++)
	{
		int64_t		ts;
		double		value;

		tst_state_point(data, &layout, i, &ts, &value);
		if (ts == INT64_MIN || ts == INT64_MAX)
			abort();
		sum += isnan(value) ? 0.0 : 1.0;
	}
	return sum < 0.0;
}
