/*
 * tst.c
 *		Module entry point, settings and helpers shared by the SQL glue.
 */
#include "postgres.h"

#include <math.h>

#include <cblas.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "tst.h"

PG_MODULE_MAGIC;

int			tst_blas_threads = 1;

/* Thread count last handed to OpenBLAS, so that repeated calls are free. */
static int	applied_blas_threads = -1;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("tst.blas_threads",
							"Sets the number of OpenBLAS threads a backend uses for tst.",
							"One thread per backend leaves the other cores to parallel "
							"workers and other sessions.",
							&tst_blas_threads,
							1, 1, 256,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("tst");
}

void
tst_apply_blas_threads(void)
{
	if (applied_blas_threads != tst_blas_threads)
	{
		openblas_set_num_threads(tst_blas_threads);
		applied_blas_threads = tst_blas_threads;
	}
}

static void *
context_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
context_free(void *ctx, void *ptr)
{
	pfree(ptr);
}

void
tst_context_allocator(TstAllocator *allocator, MemoryContext context)
{
	allocator->alloc = context_alloc;
	allocator->free = context_free;
	allocator->ctx = context;
}

void
tst_report_status(TstStatus status, const char *errmsg_text,
				  const char *context_text)
{
	int			code;

	switch (status)
	{
		case TST_ERR_NOMEM:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		case TST_ERR_CONFIG:
		case TST_ERR_ARGUMENT:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case TST_ERR_FORMAT:
			code = ERRCODE_DATA_CORRUPTED;
			break;
		case TST_ERR_TOO_LARGE:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case TST_ERR_NUMERIC:
			code = ERRCODE_DATA_EXCEPTION;
			break;
		case TST_ERR_NO_DATA:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case TST_ERR_CANCELLED:
			code = ERRCODE_QUERY_CANCELED;
			break;
		default:
			code = ERRCODE_INTERNAL_ERROR;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", errmsg_text[0] ? errmsg_text : "tst engine failure"),
			 context_text ? errdetail("%s", context_text) : 0));
	pg_unreachable();
}

/* Index of a quantile level in the model, or -1. */
static int
find_quantile(const TstConfig *config, double level)
{
	for (int i = 0; i < config->n_quantiles; i++)
		if (fabs(config->quantiles[i] - level) < 1e-6)
			return i;
	return -1;
}

void
tst_choose_quantiles(const TstConfig *config, double confidence,
					 bool want_bounds, const char *model_label,
					 TstQuantileChoice *choice)
{
	int			q = config->n_quantiles;

	/* Point forecast: the median, or the levels on either side of 0.5. */
	choice->point = find_quantile(config, 0.5);
	choice->point_low = choice->point_high = 0;
	if (choice->point < 0)
	{
		int			above = 0;

		while (above < q && config->quantiles[above] < 0.5)
			above++;
		if (above == 0)
			choice->point = 0;
		else if (above == q)
			choice->point = q - 1;
		else
		{
			choice->point_low = above - 1;
			choice->point_high = above;
		}
	}

	choice->lower = choice->upper = -1;
	if (!want_bounds)
		return;

	if (isnan(confidence) || confidence <= 0.0 || confidence >= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence %g is out of range", confidence),
				 errdetail("The confidence level must be greater than 0 and less than 1.")));

	choice->lower = find_quantile(config, (1.0 - confidence) / 2.0);
	choice->upper = find_quantile(config, (1.0 + confidence) / 2.0);
	if (choice->lower < 0 || choice->upper < 0 || choice->lower == choice->upper)
	{
		StringInfoData levels;
		int			n_levels = 0;

		initStringInfo(&levels);
		for (int i = 0; i < q; i++)
		{
			double		tau = config->quantiles[i];
			double		c = 1.0 - 2.0 * tau;

			/* A level c is supported when both (1-c)/2 and (1+c)/2 exist. */
			if (tau < 0.5 && find_quantile(config, 1.0 - tau) >= 0)
			{
				appendStringInfo(&levels, "%s%g", n_levels ? ", " : "", c);
				n_levels++;
			}
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence %g is not supported by model \"%s\"",
						confidence, model_label),
				 n_levels > 0
				 ? errdetail("The model supports confidence levels %s.", levels.data)
				 : errdetail("The model has no pair of quantiles symmetric around 0.5, so it has no intervals."),
				 errhint("Train a model whose \"quantiles\" option contains %g and %g.",
						 (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0)));
	}
}
