/*
 * harness.h
 *		Minimal test harness for the standalone engine tests.
 *
 * Each test binary defines its cases with TEST(name), runs them from main()
 * with RUN(name), and returns test_summary(). Every failed CHECK prints the
 * file, line and condition; the summary prints "N passed, N failed" and the
 * exit status is non-zero when any case failed.
 */
#ifndef TST_TEST_HARNESS_H
#define TST_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>

static int	harness_passed;
static int	harness_failed;
static int	harness_case_failed;

#define TEST(name) static void name(void)

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			printf("    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			harness_case_failed = 1; \
		} \
	} while (0)

/* Check |a - b| <= tol * max(1, |b|), printing both values on failure. */
#define CHECK_CLOSE(a, b, tol) \
	do { \
		double ca_ = (double) (a), cb_ = (double) (b); \
		if (!(fabs(ca_ - cb_) <= (tol) * fmax(1.0, fabs(cb_)))) { \
			printf("    %s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n", \
				   __FILE__, __LINE__, #a, ca_, #b, cb_, (double) (tol)); \
			harness_case_failed = 1; \
		} \
	} while (0)

#define RUN(name) \
	do { \
		harness_case_failed = 0; \
		name(); \
		if (harness_case_failed) { harness_failed++; printf("not ok - %s\n", #name); } \
		else { harness_passed++; printf("ok - %s\n", #name); } \
		fflush(stdout); \
	} while (0)

static inline int
test_summary(void)
{
	printf("%d passed, %d failed\n", harness_passed, harness_failed);
	return harness_failed ? 1 : 0;
}

#endif							/* TST_TEST_HARNESS_H */
