/*
 * source_query.c
 *		Build the query that reads (series, ts, value) rows from a source.
 *
 * A source is either a SELECT (or WITH, VALUES, TABLE) statement, which is
 * wrapped as a subquery, or the name of a table or view. A name is looked up
 * in the catalog and quoted again, so that it can never inject SQL.
 * Column names are always quoted as identifiers.
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/lockdefs.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/varlena.h"

#include "source_query.h"

/* True when text starts (after blanks and parentheses) with a query keyword. */
static bool
is_query_text(const char *source)
{
	static const char *const keywords[] = {"select", "with", "values", "table"};
	const char *p = source;

	while (*p && (isspace((unsigned char) *p) || *p == '('))
		p++;
	for (int i = 0; i < (int) lengthof(keywords); i++)
	{
		size_t		len = strlen(keywords[i]);

		if (pg_strncasecmp(p, keywords[i], len) == 0 &&
			!isalnum((unsigned char) p[len]) && p[len] != '_')
			return true;
	}
	return false;
}

/* Error context while parsing a source query: show it, with the cursor. */
static void
source_syntax_errcontext(void *arg)
{
	const char *query = arg;
	int			position = geterrposition();

	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery(query);
	}
	errcontext("source query");
}

/*
 * Raise an error unless query is exactly one SELECT statement. Without this
 * check, text such as "SELECT 1) AS x; DROP TABLE t; --" would close the
 * subquery it is wrapped in and append statements of its own.
 */
static void
check_single_select(const char *query)
{
	ErrorContextCallback errcallback;
	List	   *statements;

	/* Point a syntax error's cursor into the source text, as SPI does. */
	errcallback.callback = source_syntax_errcontext;
	errcallback.arg = (void *) query;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	statements = raw_parser(query, RAW_PARSE_DEFAULT);
	error_context_stack = errcallback.previous;

	if (list_length(statements) != 1 ||
		!IsA(linitial_node(RawStmt, statements)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source query must be a single SELECT statement"),
				 errdetail("The source query has %d statements.", list_length(statements)),
				 errhint("Pass one SELECT, WITH, VALUES or TABLE statement, or a table or view name.")));
}

/* The FROM item for a source: "(query) AS tst_source" or a quoted relation. */
static char *
source_from_item(const char *source)
{
	List	   *names;
	RangeVar   *rv;
	Oid			relid;

	if (source[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must not be empty"),
				 errhint("Pass a table or view name, or a SELECT statement.")));

	if (is_query_text(source))
	{
		char	   *query = pstrdup(source);
		size_t		len = strlen(query);

		/* A trailing semicolon is harmless at the prompt, so accept it here. */
		while (len > 0 && (isspace((unsigned char) query[len - 1]) || query[len - 1] == ';'))
			query[--len] = '\0';
		check_single_select(query);
		return psprintf("(%s) AS tst_source", query);
	}

	/* Check the syntax first, so that the error can explain what a source is. */
	{
		char	   *copy = pstrdup(source);
		List	   *parts;

		if (!SplitIdentifierString(copy, '.', &parts))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid source \"%s\"", source),
					 errdetail("A source is a table or view name, or a query that starts with SELECT, WITH, VALUES or TABLE."),
					 errhint("Quote names that need it, as in '\"Sales Data\"' or 'public.\"Sales Data\"'.")));
	}
	names = stringToQualifiedNameList(source);
	rv = makeRangeVarFromNameList(names);
	relid = RangeVarGetRelid(rv, AccessShareLock, false);
	return psprintf("%s AS tst_source",
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											   get_rel_name(relid)));
}

static void
check_column_name(const char *what, const char *name)
{
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be %s", what, name == NULL ? "NULL" : "empty"),
				 errhint("Pass the name of a column of the source.")));
}

/*
 * Build "SELECT series, tst.series_agg(ts, value)[, count(value)] FROM
 * source [GROUP BY 1 [ORDER BY 1]]". The count is left out when no caller
 * reads it, since a second aggregate over every row costs about a tenth of
 * the query's time.
 */
static char *
series_query(const char *source, const char *time_column, const char *value_column,
			 const char *series_column, bool with_count, bool ordered)
{
	StringInfoData buf;
	char	   *from_item;

	check_column_name("time_column", time_column);
	check_column_name("value_column", value_column);
	if (series_column != NULL)
		check_column_name("series_column", series_column);
	from_item = source_from_item(source);

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT %s, "
					 "tst.series_agg(tst_source.%s::pg_catalog.timestamptz, tst_source.%s::pg_catalog.float8)",
					 series_column ? psprintf("tst_source.%s::pg_catalog.text",
											  quote_identifier(series_column))
					 : "NULL::pg_catalog.text",
					 quote_identifier(time_column), quote_identifier(value_column));
	if (with_count)
		appendStringInfo(&buf, ", pg_catalog.count(tst_source.%s)",
						 quote_identifier(value_column));
	appendStringInfo(&buf, " FROM %s", from_item);
	if (series_column != NULL)
		appendStringInfoString(&buf, ordered ? " GROUP BY 1 ORDER BY 1" : " GROUP BY 1");
	return buf.data;
}

char *
tst_source_series_query(const char *source, const char *time_column,
						const char *value_column, const char *series_column)
{
	return series_query(source, time_column, value_column, series_column, true, true);
}

char *
tst_source_history_query(const char *source, const char *time_column,
						 const char *value_column, const char *series_column)
{
	return series_query(source, time_column, value_column, series_column, false, false);
}
