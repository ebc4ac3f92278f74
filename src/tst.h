/*
 * tst.h
 *		Declarations shared by the SQL glue of the tst extension.
 *
 * The glue turns SQL arguments into engine calls (src/core/tst_core.h): it
 * checks arguments, owns memory contexts, reads rows through SPI, keeps the
 * per-backend model cache and maps engine status codes to ereport errors.
 */
#ifndef TST_H
#define TST_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "tst_core.h"

/* Value of the tst.blas_threads setting. */
extern int	tst_blas_threads;

/* Largest horizon a forecast call accepts, whatever the model. */
#define TST_MAX_HORIZON 10000

/* An engine allocator that allocates in a memory context (huge, no OOM). */
extern void tst_context_allocator(TstAllocator *allocator, MemoryContext context);

/* ereport(ERROR) for an engine status, with the engine's message. */
extern void tst_report_status(TstStatus status, const char *errmsg_text,
							  const char *context_text) pg_attribute_noreturn();

/* Apply tst.blas_threads to OpenBLAS (cheap; call before engine work). */
extern void tst_apply_blas_threads(void);

/*
 * Options of tst.train: the model configuration and the training options,
 * parsed from a jsonb object (src/options.c).
 */
extern void tst_parse_train_options(Jsonb *options, int32 horizon,
									TstConfig *config,
									TstTrainOptions *train_options);

/* The JSON type of a jsonb value, for error messages ("number", "array", ...). */
extern const char *tst_json_type_name(const JsonbValue *v);

/* Model configuration to and from the jsonb stored in tst.models.config. */
extern Jsonb *tst_config_to_jsonb(const TstConfig *config);
extern void tst_config_from_jsonb(Jsonb *json, TstConfig *config,
								  const char *model_label);

/* A model loaded from tst.models, as kept in the per-backend cache. */
typedef struct TstLoadedModel
{
	char	   *name;
	int32		version;
	TstModel   *model;
	MemoryContext context;		/* owns the model and this struct */
} TstLoadedModel;

/*
 * Look up a model by "name" (latest version) or "name@version", load and
 * validate it on a cache miss, and return the cached entry. The entry stays
 * valid until the next call of this function in the backend.
 */
extern TstLoadedModel *tst_get_model(const char *model_ref);

/* Store a trained model as the next version of name; returns the version. */
extern int32 tst_store_model(const char *name, TstModel *model, Jsonb *metrics);

/*
 * The horizon of a forecast call: the model's own when isnull, otherwise
 * horizon, which must be from 1 to the model's horizon (src/sql_forecast.c).
 */
extern int	tst_resolve_horizon(const TstLoadedModel *loaded, bool isnull,
								int32 horizon);

/*
 * Number of slots of the time grid of s, from its first to its last
 * timestamp, for its detected step (src/sql_train.c).
 */
struct TstSeries;
extern int64 tst_series_grid_slots(const struct TstSeries *s, const Interval *step);

/* Point forecast index and bound indexes for a confidence level. */
typedef struct TstQuantileChoice
{
	int			point;			/* index of the median (or -1: mean of two) */
	int			point_low;		/* used when point == -1 */
	int			point_high;
	int			lower;			/* index of (1 - c) / 2, or -1 when no bounds */
	int			upper;			/* index of (1 + c) / 2 */
} TstQuantileChoice;

/* Resolve a confidence level against a model's quantiles, or error. */
extern void tst_choose_quantiles(const TstConfig *config, double confidence,
								 bool want_bounds, const char *model_label,
								 TstQuantileChoice *choice);

/* Point forecast of one step from its Q sorted quantile values. */
static inline double
tst_point_forecast(const double *q_values, const TstQuantileChoice *choice)
{
	if (choice->point >= 0)
		return q_values[choice->point];
	return 0.5 * (q_values[choice->point_low] + q_values[choice->point_high]);
}

#endif							/* TST_H */
