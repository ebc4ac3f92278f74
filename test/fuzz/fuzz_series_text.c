/*
 * fuzz_series_text.c
 *		libFuzzer target for the tst.series text scanner (series_parse.c).
 *
 * The input is taken as a C string. Every token must lie inside the input,
 * a scan must end in TST_SCAN_END or TST_SCAN_ERROR, and an error position
 * must point into the string. Values are converted with strtod as a stand-in
 * for float8in, which checks that the token bounds are usable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "series_parse.h"

static void
check_inside(const char *input, size_t len, const char *p, size_t n)
{
	if (p < input || p + n > input + len)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *input = malloc(size + 1);
	TstSeriesScanner scanner;
	TstSeriesToken token;
	TstScanResult result;
	size_t		points = 0;

	memcpy(input, data, size);
	input[size] = '\0';
	size = strlen(input);

	tst_series_scan_init(&scanner, input);
	while ((result = tst_series_scan_next(&scanner, &token)) == TST_SCAN_POINT)
	{
		char		value[64];
		size_t		n = token.value_len < sizeof(value) - 1 ? token.value_len : sizeof(value) - 1;

		check_inside(input, size, token.timestamp, token.timestamp_len);
		check_inside(input, size, token.value, token.value_len);
		if (token.value_len == 0 || memchr(token.timestamp, '"', token.timestamp_len) != NULL)
			abort();
		memcpy(value, token.value, n);
		value[n] = '\0';
		(void) strtod(value, NULL);
		/* Each point consumes at least the two quotes and the colon. */
		if (++points > size)
			abort();
	}
	if (result == TST_SCAN_ERROR)
	{
		check_inside(input, size + 1, scanner.error_pos, 1);
		if (scanner.expected == NULL)
			abort();
		/* The scanner stays failed. */
		if (tst_series_scan_next(&scanner, &token) != TST_SCAN_ERROR)
			abort();
	}
	else if (tst_series_scan_next(&scanner, &token) != TST_SCAN_END)
		abort();

	free(input);
	return 0;
}
