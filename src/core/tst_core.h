/*
 * tst_core.h
 *		Public interface of the tst numerical engine.
 *
 * The engine is plain C11 with no PostgreSQL headers. It allocates through a
 * caller-supplied allocator and reports failures through TstStatus return
 * codes plus a message buffer; it never exits or prints.
 *
 * Size letters used in shape comments throughout src/core:
 *   B  batch (windows)            L  context length (time steps)
 *   H  horizon (time steps)       Q  number of quantiles
 *   P  patch length               S  patch stride
 *   N  number of patch tokens     D  d_model (channels)
 *   NH number of heads            DH head size (D / NH)
 *   F  feed-forward width (d_ff)  W  local attention window (tokens)
 *
 * The architecture and parameter layout are specified in docs/model.md; the
 * weights blob format is specified in docs/model-format.md.
 */
#ifndef TST_CORE_H
#define TST_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Status codes returned by every fallible engine function. */
typedef enum TstStatus
{
	TST_OK = 0,
	TST_ERR_NOMEM,				/* the allocator returned NULL */
	TST_ERR_CONFIG,				/* invalid configuration value */
	TST_ERR_FORMAT,				/* malformed or incompatible weights blob */
	TST_ERR_ARGUMENT,			/* invalid argument to an engine call */
	TST_ERR_TOO_LARGE,			/* a size exceeds TST_MAX_ALLOC_BYTES */
	TST_ERR_NUMERIC,			/* non-finite value where a finite one is required */
	TST_ERR_NO_DATA,			/* not enough data to train or validate */
	TST_ERR_CANCELLED			/* a callback asked to stop */
} TstStatus;

/* Length of the message buffer that engine calls fill on failure. */
#define TST_ERRMSG_LEN 256

/* Largest single allocation the engine requests (1 GiB). */
#define TST_MAX_ALLOC_BYTES ((size_t) 1 << 30)

/*
 * Memory allocator supplied by the caller. alloc returns NULL on failure;
 * memory need not be zeroed. free may be NULL when the caller releases all
 * memory at once (a PostgreSQL memory context reset).
 */
typedef struct TstAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void		(*free) (void *ctx, void *ptr);
	void	   *ctx;
} TstAllocator;

/* An allocator over malloc and free, for standalone programs and tests. */
extern const TstAllocator tst_malloc_allocator;

/* Deterministic random numbers (splitmix64 seeding, xoshiro256**). */
typedef struct TstRng
{
	uint64_t	s[4];
} TstRng;

void		tst_rng_seed(TstRng *rng, uint64_t seed);
uint64_t	tst_rng_next(TstRng *rng);
double		tst_rng_uniform(TstRng *rng);	/* [0, 1) */

typedef enum TstAttentionKind
{
	TST_ATTENTION_DENSE = 0,	/* causal full attention, the reference */
	TST_ATTENTION_LOCAL = 1,	/* tokens i-W+1 .. i */
	TST_ATTENTION_LOGSPARSE = 2 /* local window plus log-spaced links back */
} TstAttentionKind;

#define TST_MAX_QUANTILES 32

/* Model configuration; see docs/model.md for meanings and defaults. */
typedef struct TstConfig
{
	int32_t		context;		/* L */
	int32_t		horizon;		/* H */
	int32_t		patch_len;		/* P */
	int32_t		patch_stride;	/* S */
	int32_t		d_model;		/* D */
	int32_t		n_heads;		/* NH */
	int32_t		n_layers;
	int32_t		d_ff;			/* F */
	float		dropout;		/* probability in [0, 1) */
	TstAttentionKind attention;
	int32_t		window;			/* W, in tokens, >= 1 */
	int32_t		n_quantiles;	/* Q */
	float		quantiles[TST_MAX_QUANTILES];	/* strictly increasing, in (0,1) */
} TstConfig;

/* Fill a configuration with the documented defaults. */
void		tst_config_default(TstConfig *config);

/*
 * Check every field and every derived size (including 64-bit overflow of
 * parameter and activation counts). On failure writes a message to errmsg.
 */
TstStatus	tst_config_validate(const TstConfig *config, char *errmsg);

/* Number of patch tokens N for a valid configuration. */
int32_t		tst_config_num_patches(const TstConfig *config);

/* Name of an attention kind ("dense", "local", "logsparse"). */
const char *tst_attention_name(TstAttentionKind kind);

/* Parse an attention kind name; returns false if unknown. */
bool		tst_attention_parse(const char *name, TstAttentionKind *kind);

/*
 * A sparse causal attention pattern in compressed-row form: the keys that
 * query token i attends to are cols[rowptr[i] .. rowptr[i+1]-1], ascending.
 */
typedef struct TstPattern
{
	int32_t		n_tokens;		/* N */
	int64_t		nnz;			/* total number of (query, key) pairs */
	int64_t    *rowptr;			/* (N+1,) */
	int32_t    *cols;			/* (nnz,) */
} TstPattern;

/* Build the attention pattern of a kind for n_tokens tokens. */
TstStatus	tst_pattern_build(TstPattern *pattern, TstAttentionKind kind,
							  int32_t window, int32_t n_tokens,
							  const TstAllocator *allocator, char *errmsg);
void		tst_pattern_free(TstPattern *pattern, const TstAllocator *allocator);

/* One named parameter tensor of a model, with its gradient. */
typedef struct TstTensor
{
	const char *name;			/* e.g. "blocks.0.attn.qkv.weight" */
	int32_t		ndim;			/* 1 or 2 */
	int32_t		shape[2];
	int64_t		size;			/* product of the shape */
	float	   *data;
	float	   *grad;			/* NULL until training memory exists */
} TstTensor;

typedef struct TstModel TstModel;

/* Allocate a model's parameters (uninitialized) for a valid configuration. */
TstStatus	tst_model_create(const TstConfig *config, const TstAllocator *allocator,
							 TstModel **model, char *errmsg);
void		tst_model_free(TstModel *model);
const TstConfig *tst_model_config(const TstModel *model);

/* Initialize parameters from a seed, as docs/model.md describes. */
void		tst_model_init(TstModel *model, uint64_t seed);

/* Parameter tensors, in the documented order. */
int32_t		tst_model_num_tensors(const TstModel *model);
TstTensor  *tst_model_tensor(TstModel *model, int32_t index);
int64_t		tst_model_num_params(const TstModel *model);

/*
 * Normalize one raw window x (L,) by its own mean and standard deviation,
 * computed in double with two passes. Writes xn (L,) and the statistics.
 */
void		tst_normalize_window(const double *x, int32_t length, float *xn,
								 double *mean, double *scale);

/*
 * Forecast a batch of raw windows: x (B, L) finite values, out (B, H, Q)
 * de-normalized quantile forecasts, sorted along Q per step. Inference only,
 * no dropout. Workspace for the batch is allocated on first use and reused.
 */
TstStatus	tst_model_forecast(TstModel *model, const double *x, int32_t batch,
							   double *out, char *errmsg);

/*
 * Interval calibration (docs/model.md, "Calibration"): offsets (H, Q) in
 * normalized units that tst_model_forecast adds to the sorted quantiles of
 * each step. A new model has every offset 0, which leaves the raw quantiles.
 * tst_train sets them from the validation windows; the weights blob stores
 * them (format version 2).
 */
float	   *tst_model_calibration(TstModel *model);

/* Copy offsets (H, Q) into the model; NULL sets every offset to 0. */
void		tst_model_set_calibration(TstModel *model, const float *offsets);

/*
 * Training-mode forward on normalized inputs: xn (B, L), yn (B, H) targets
 * normalized with each window's own statistics. Writes the normalized
 * predictions to pred (B, H, Q) when pred is not NULL and the mean pinball
 * loss to *loss. With training true, dropout draws from rng.
 * Keeps the activations needed by tst_model_backward.
 */
TstStatus	tst_model_forward(TstModel *model, const float *xn, const float *yn,
							  int32_t batch, bool training, TstRng *rng,
							  float *pred, float *loss, char *errmsg);

/*
 * Allocate zeroed gradient buffers for every tensor (idempotent). Needed
 * before tst_model_backward.
 */
TstStatus	tst_model_enable_grad(TstModel *model, char *errmsg);

/* Accumulate d(loss)/d(parameters) of the last forward into the grads. */
TstStatus	tst_model_backward(TstModel *model, char *errmsg);
void		tst_model_zero_grad(TstModel *model);

/* AdamW hyperparameters for one step. */
typedef struct TstAdamW
{
	float		learning_rate;
	float		beta1;
	float		beta2;
	float		eps;
	float		weight_decay;	/* decoupled; only on 2-D weights except pos */
} TstAdamW;

/* AdamW state: first and second moments per parameter, and the step count. */
typedef struct TstOptimizer TstOptimizer;

TstStatus	tst_optimizer_create(TstModel *model, const TstAllocator *allocator,
								 TstOptimizer **optimizer, char *errmsg);
void		tst_optimizer_free(TstOptimizer *optimizer);

/*
 * Clip the global gradient norm to max_norm (no clipping if max_norm <= 0),
 * then take one AdamW step with bias correction. Writes the norm before
 * clipping to *grad_norm when it is not NULL. A non-finite gradient norm
 * returns TST_ERR_NUMERIC and leaves the parameters unchanged.
 */
TstStatus	tst_optimizer_step(TstOptimizer *optimizer, const TstAdamW *hparams,
							   float max_norm, float *grad_norm, char *errmsg);

/* Training data: raw series, each finite, for channel-independent windows. */
typedef struct TstSeriesSet
{
	int32_t		n_series;
	const double *const *values;	/* values[s] has lengths[s] points */
	const int64_t *lengths;
} TstSeriesSet;

typedef struct TstTrainOptions
{
	int32_t		epochs;
	int32_t		batch_size;
	double		learning_rate;
	double		weight_decay;
	double		validation_fraction;	/* share of each series held out */
	int32_t		patience;		/* epochs without improvement before stop */
	uint64_t	seed;
	double		max_seconds;	/* 0 means no limit */
	double		clip_norm;
	double		warmup_fraction;	/* share of steps with linear warm-up */
	int64_t		max_windows_per_epoch;	/* 0 means all training windows */
	/*
	 * Allocator for the training loop's own memory (windows, batches, optimizer
	 * moments, best-epoch snapshot), so that a longjmp out of check_interrupt
	 * leaks nothing when it is a PostgreSQL memory context. NULL means
	 * tst_malloc_allocator.
	 */
	const TstAllocator *allocator;
} TstTrainOptions;

void		tst_train_options_default(TstTrainOptions *options);

typedef struct TstEpochStats
{
	int32_t		epoch;			/* 1-based */
	double		train_loss;
	double		validation_loss;
	double		seconds;		/* elapsed since training started */
} TstEpochStats;

/*
 * Callbacks from the training loop. check_interrupt runs between batches and
 * may longjmp (PostgreSQL's CHECK_FOR_INTERRUPTS) or return true to cancel.
 * on_epoch runs after each epoch. Either may be NULL.
 */
typedef struct TstTrainCallbacks
{
	bool		(*check_interrupt) (void *ctx);
	void		(*on_epoch) (void *ctx, const TstEpochStats *stats);
	void	   *ctx;
} TstTrainCallbacks;

#define TST_MAX_EPOCHS 10000

typedef struct TstTrainResult
{
	int32_t		epochs_run;
	int32_t		best_epoch;
	int64_t		train_windows;
	int64_t		validation_windows;
	double		seconds;
	int64_t		calibration_windows;	/* validation windows scored for calibration */
	int32_t		n_history;		/* entries filled in the arrays below */
	double		train_loss[TST_MAX_EPOCHS];
	double		validation_loss[TST_MAX_EPOCHS];
} TstTrainResult;

/*
 * Train an initialized model on a series set. Restores the parameters of the
 * epoch with the best validation loss before returning.
 */
TstStatus	tst_train(TstModel *model, const TstSeriesSet *data,
					  const TstTrainOptions *options,
					  const TstTrainCallbacks *callbacks,
					  TstTrainResult *result, char *errmsg);

/* Weights blob (docs/model-format.md). */
#define TST_FORMAT_MAGIC "TSTW"
#define TST_FORMAT_VERSION 2
/* The oldest version tst_model_load reads (no calibration record). */
#define TST_FORMAT_MIN_VERSION 1

/* Size in bytes of the blob that tst_model_save writes. */
size_t		tst_model_saved_size(const TstModel *model);

/* Write the model's parameters and calibration into buf (saved_size bytes). */
void		tst_model_save(const TstModel *model, uint8_t *buf);

/*
 * Read parameters and calibration from a blob into a model created from the
 * matching configuration. Checks the header, every tensor name, shape and
 * value (finite), and the exact length; never reads past len. A version 1
 * blob has no calibration record and leaves every offset 0.
 */
TstStatus	tst_model_load(TstModel *model, const uint8_t *buf, size_t len,
						   char *errmsg);

/* Wall-clock seconds from a monotonic clock. */
double		tst_now_seconds(void);

#endif							/* TST_CORE_H */
