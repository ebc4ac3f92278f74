/*
 * source_query.h
 *		Queries over the source argument of tst.train and tst.forecast_table.
 */
#ifndef TST_SOURCE_QUERY_H
#define TST_SOURCE_QUERY_H

/*
 * Return a query with columns (series text, history tst.series, rows bigint):
 * one row per series of the source, ordered by series, gathered with
 * tst.series_agg. rows counts the non-NULL values. Without series_column the
 * whole source is one series named NULL.
 */
extern char *tst_source_series_query(const char *source, const char *time_column,
									 const char *value_column,
									 const char *series_column);

/*
 * The same query without the rows column and in no particular order, for
 * tst.forecast_table, which sorts its much smaller output instead.
 */
extern char *tst_source_history_query(const char *source, const char *time_column,
									  const char *value_column,
									  const char *series_column);

#endif							/* TST_SOURCE_QUERY_H */
