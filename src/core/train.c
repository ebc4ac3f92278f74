/*
 * train.c
 *		The training loop: windows, validation split, mini-batches, schedule,
 *		early stopping.
 *
 * A window is L context steps followed by H target steps of one series and
 * is stored as a (series, offset) pair, so the loop keeps no copy of the
 * series.
 * The last v = max(H, round(validation_fraction * n)) points of a series of
 * n points are held out: training windows have every target before n - v,
 * validation windows have every target at or after n - v, and their context
 * may reach back into the training part. With validation_fraction 0 there is
 * no validation, no early stopping, and the last epoch's parameters are kept.
 *
 * Every epoch shuffles the training windows (Fisher-Yates) and walks them in
 * mini-batches. A batch normalizes each context with its own mean and scale,
 * and its targets with the same statistics. Each batch takes one AdamW step
 * at the scheduled learning rate, which rises linearly during warm-up and
 * then follows a cosine down to 10% of the base rate at the last step.
 * After each epoch the validation loss, without dropout, decides early
 * stopping. The parameters of the best epoch are copied aside and restored
 * at the end, and the validation windows then calibrate the intervals.
 *
 * check_interrupt may longjmp out of the loop (PostgreSQL's
 * CHECK_FOR_INTERRUPTS), so every block the loop allocates comes from the
 * allocator in the options, and a memory context reset releases them all.
 *
 * Two generators derived from the seed draw the shuffles and the dropout
 * masks, so the same seed, data and options give the same parameters bit for
 * bit on one machine.
 */
#include "kernels.h"
#include "tst_core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Final learning rate of the cosine schedule, as a share of the base rate. */
#define TRAIN_FINAL_LR_SHARE 0.1

/* Fixed AdamW constants (docs/model.md, "Optimizer"). */
#define TRAIN_ADAM_BETA1 0.9f
#define TRAIN_ADAM_BETA2 0.999f
#define TRAIN_ADAM_EPS 1e-8f

#define TRAIN_PI 3.14159265358979323846

/* Mixed into the seed so that the dropout stream differs from the shuffles. */
#define TRAIN_DROPOUT_SEED_MIX UINT64_C(0x9e3779b97f4a7c15)

/* One window: context starts at values[series][offset]. */
typedef struct TrainWindow
{
	int32_t		series;
	int32_t		offset;
} TrainWindow;

/* State of one tst_train call: its inputs and everything it allocates. */
typedef struct TrainState
{
	TstModel   *model;
	const TstSeriesSet *data;
	const TstTrainOptions *options;
	const TstTrainCallbacks *callbacks;
	TstAllocator allocator;
	int32_t		context;		/* L */
	int32_t		horizon;		/* H */
	int32_t		batch_rows;		/* rows allocated in xn and yn */

	TrainWindow *train;			/* (n_train,) shuffled in place every epoch */
	int64_t		n_train;
	TrainWindow *valid;			/* (n_valid,) in series and offset order */
	int64_t		n_valid;

	float	   *xn;				/* (batch_rows, L) normalized contexts */
	float	   *yn;				/* (batch_rows, H) normalized targets */
	float	   *best;			/* (n_params,) parameters of the best epoch */
	TstOptimizer *optimizer;

	TstRng		shuffle_rng;
	TstRng		dropout_rng;
	double		start_seconds;
} TrainState;

/* Exported for test_train.c; not part of the public API. */
double		tst_train_learning_rate(double base_rate, double warmup_fraction,
									int64_t step, int64_t total_steps);


/*
 * Fill the options with the defaults of docs/model.md, "Training":
 *   epochs 30, batch_size 64, learning_rate 1e-3, weight_decay 0.01,
 *   validation_fraction 0.1, patience 5, seed 42, max_seconds 0 (no limit),
 *   clip_norm 1.0, warmup_fraction 0.05, max_windows_per_epoch 0 (all),
 *   allocator NULL (malloc).
 */
void
tst_train_options_default(TstTrainOptions *options)
{
	memset(options, 0, sizeof(*options));
	options->epochs = 30;
	options->batch_size = 64;
	options->learning_rate = 1e-3;
	options->weight_decay = 0.01;
	options->validation_fraction = 0.1;
	options->patience = 5;
	options->seed = 42;
	options->max_seconds = 0.0;
	options->clip_norm = 1.0;
	options->warmup_fraction = 0.05;
	options->max_windows_per_epoch = 0;
	options->allocator = NULL;
}

/*
 * Compute the learning rate of a 0-based step out of total_steps. The first
 * round(warmup_fraction * total_steps) steps rise linearly and reach
 * base_rate at the last warm-up step. The remaining steps follow a cosine
 * from base_rate down to 10% of base_rate at the last step.
 */
double
tst_train_learning_rate(double base_rate, double warmup_fraction,
						int64_t step, int64_t total_steps)
{
	int64_t		warmup_steps;
	int64_t		decay_span;
	double		progress = 0.0;
	double		cosine;

	if (total_steps <= 0)
		return base_rate;
	warmup_steps = (int64_t) llround(warmup_fraction * (double) total_steps);
	if (warmup_steps > total_steps)
		warmup_steps = total_steps;

	if (step < warmup_steps)
		return base_rate * (double) (step + 1) / (double) warmup_steps;

	/* With one step left after warm-up, that step runs at the base rate. */
	decay_span = total_steps - 1 - warmup_steps;
	if (decay_span > 0)
		progress = fmin(1.0, (double) (step - warmup_steps) / (double) decay_span);
	cosine = 0.5 * (1.0 + cos(TRAIN_PI * progress));
	return base_rate * (TRAIN_FINAL_LR_SHARE + (1.0 - TRAIN_FINAL_LR_SHARE) * cosine);
}

/* Reject options outside their documented ranges, including NaN. */
static TstStatus
check_options(const TstTrainOptions *options, char *errmsg)
{
	if (options->epochs < 1 || options->epochs > TST_MAX_EPOCHS)
	{
		tst_set_error(errmsg, "invalid epochs %d: must be between 1 and %d",
					options->epochs, TST_MAX_EPOCHS);
		return TST_ERR_ARGUMENT;
	}
	if (options->batch_size < 1)
	{
		tst_set_error(errmsg, "invalid batch_size %d: must be at least 1",
					options->batch_size);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(options->learning_rate) || options->learning_rate <= 0.0)
	{
		tst_set_error(errmsg, "invalid learning_rate %g: must be finite and > 0",
					options->learning_rate);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(options->weight_decay) || options->weight_decay < 0.0)
	{
		tst_set_error(errmsg, "invalid weight_decay %g: must be finite and >= 0",
					options->weight_decay);
		return TST_ERR_ARGUMENT;
	}
	if (!(options->validation_fraction >= 0.0 && options->validation_fraction < 1.0))
	{
		tst_set_error(errmsg, "invalid validation_fraction %g: must be in [0, 1)",
					options->validation_fraction);
		return TST_ERR_ARGUMENT;
	}
	if (options->patience < 1)
	{
		tst_set_error(errmsg, "invalid patience %d: must be at least 1",
					options->patience);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(options->max_seconds) || options->max_seconds < 0.0)
	{
		tst_set_error(errmsg, "invalid max_seconds %g: must be finite and >= 0 (0 means no limit)",
					options->max_seconds);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(options->clip_norm) || options->clip_norm < 0.0)
	{
		tst_set_error(errmsg, "invalid clip_norm %g: must be finite and >= 0 (0 means no clipping)",
					options->clip_norm);
		return TST_ERR_ARGUMENT;
	}
	if (!(options->warmup_fraction >= 0.0 && options->warmup_fraction <= 1.0))
	{
		tst_set_error(errmsg, "invalid warmup_fraction %g: must be in [0, 1]",
					options->warmup_fraction);
		return TST_ERR_ARGUMENT;
	}
	if (options->max_windows_per_epoch < 0)
	{
		tst_set_error(errmsg, "invalid max_windows_per_epoch %lld: must be >= 0 (0 means all)",
					(long long) options->max_windows_per_epoch);
		return TST_ERR_ARGUMENT;
	}
	if (options->allocator != NULL && options->allocator->alloc == NULL)
	{
		tst_set_error(errmsg, "invalid allocator: alloc is NULL");
		return TST_ERR_ARGUMENT;
	}
	return TST_OK;
}

/* Reject a malformed series set and any non-finite value. */
static TstStatus
check_data(const TstSeriesSet *data, char *errmsg)
{
	if (data == NULL || data->n_series == 0)
	{
		tst_set_error(errmsg, "no series to train on");
		return TST_ERR_NO_DATA;
	}
	if (data->n_series < 0 || data->values == NULL || data->lengths == NULL)
	{
		tst_set_error(errmsg, "invalid series set: negative count or NULL arrays");
		return TST_ERR_ARGUMENT;
	}

	for (int32_t s = 0; s < data->n_series; s++)
	{
		int64_t		n = data->lengths[s];
		const double *values = data->values[s];

		if (n < 0 || (n > 0 && values == NULL))
		{
			tst_set_error(errmsg, "invalid series %d: length %lld with %s values",
						s, (long long) n, values == NULL ? "NULL" : "non-NULL");
			return TST_ERR_ARGUMENT;
		}
		if (n > INT32_MAX)
		{
			tst_set_error(errmsg, "series %d has %lld points, more than the maximum of %d",
						s, (long long) n, INT32_MAX);
			return TST_ERR_TOO_LARGE;
		}
		for (int64_t i = 0; i < n; i++)
		{
			if (!isfinite(values[i]))
			{
				tst_set_error(errmsg, "series %d has a non-finite value (%g) at position %lld",
							s, values[i], (long long) i);
				return TST_ERR_NUMERIC;
			}
		}
	}
	return TST_OK;
}

/* Return the number v of points held out at the end of a series of n points. */
static int64_t
holdout_length(int64_t n, int32_t horizon, double validation_fraction)
{
	int64_t		rounded;

	if (validation_fraction <= 0.0)
		return 0;
	rounded = (int64_t) llround(validation_fraction * (double) n);
	return rounded > horizon ? rounded : horizon;
}

/* Count the training and validation windows of one series of n points. */
static void
count_series_windows(int64_t n, int32_t context, int32_t horizon,
					 double validation_fraction, int64_t *n_train, int64_t *n_valid)
{
	int64_t		v = holdout_length(n, horizon, validation_fraction);
	int64_t		last_offset = n - context - horizon;	/* last window of the series */
	int64_t		first_valid;

	/* Training: offset + L + H - 1 < n - v. */
	*n_train = (n - v - context - horizon + 1 > 0) ? n - v - context - horizon + 1 : 0;

	/* Validation: offset + L >= n - v and offset <= last_offset. */
	*n_valid = 0;
	if (v > 0)
	{
		first_valid = n - v - context;
		if (first_valid < 0)
			first_valid = 0;
		if (last_offset >= first_valid)
			*n_valid = last_offset - first_valid + 1;
	}
}

/*
 * Find the shortest series length that yields a training window. The usable
 * length n - max(H, round(f n)) never decreases as n grows, so the first n
 * that works is the minimum. The search starts just below the real-valued
 * bound n (1 - f) + 0.5 >= L + H and so takes about 1 / (1 - f) steps.
 */
static int64_t
min_series_length(int32_t context, int32_t horizon, double validation_fraction)
{
	int64_t		needed = (int64_t) context + horizon;
	int64_t		n;

	if (validation_fraction <= 0.0)
		return needed;

	n = (int64_t) floor(((double) needed - 0.5) / (1.0 - validation_fraction)) - 1;
	if (n < needed)
		n = needed;
	while (n - holdout_length(n, horizon, validation_fraction) < needed)
		n++;
	return n;
}

/* Allocate through the loop's allocator, rejecting sizes over the limit. */
static TstStatus
train_alloc(TrainState *state, int64_t count, size_t elem_size, const char *what,
			void **ptr, char *errmsg)
{
	size_t		bytes;

	*ptr = NULL;
	if (count < 0 || (uint64_t) count > TST_MAX_ALLOC_BYTES / elem_size)
	{
		tst_set_error(errmsg, "%s of %lld entries exceed the %zu-byte allocation limit",
					what, (long long) count, TST_MAX_ALLOC_BYTES);
		return TST_ERR_TOO_LARGE;
	}
	bytes = (size_t) count * elem_size;
	if (bytes == 0)
		bytes = elem_size;
	*ptr = state->allocator.alloc(state->allocator.ctx, bytes);
	if (*ptr == NULL)
	{
		tst_set_error(errmsg, "out of memory allocating %zu bytes for %s", bytes, what);
		return TST_ERR_NOMEM;
	}
	return TST_OK;
}

static void
train_free(TrainState *state, void *ptr)
{
	if (ptr != NULL && state->allocator.free != NULL)
		state->allocator.free(state->allocator.ctx, ptr);
}

/* Explain why no training window exists. */
static void
report_no_training_windows(const TrainState *state, char *errmsg)
{
	const TstSeriesSet *data = state->data;
	double		fraction = state->options->validation_fraction;
	int64_t		longest = 0;
	int64_t		needed = min_series_length(state->context, state->horizon, fraction);

	for (int32_t s = 0; s < data->n_series; s++)
		if (data->lengths[s] > longest)
			longest = data->lengths[s];

	if (fraction > 0.0)
		tst_set_error(errmsg,
					"series too short to train: the longest has %lld points, "
					"%lld needed (context %d + horizon %d + validation %lld)",
					(long long) longest, (long long) needed, state->context,
					state->horizon, (long long) (needed - state->context - state->horizon));
	else
		tst_set_error(errmsg,
					"series too short to train: the longest has %lld points, "
					"%lld needed (context %d + horizon %d)",
					(long long) longest, (long long) needed, state->context,
					state->horizon);
}

/* Count, allocate and list the training and validation windows. */
static TstStatus
enumerate_windows(TrainState *state, char *errmsg)
{
	const TstSeriesSet *data = state->data;
	double		fraction = state->options->validation_fraction;
	int64_t		n_train = 0;
	int64_t		n_valid = 0;
	int64_t		i_train = 0;
	int64_t		i_valid = 0;
	TstStatus	status;

	for (int32_t s = 0; s < data->n_series; s++)
	{
		int64_t		series_train;
		int64_t		series_valid;

		count_series_windows(data->lengths[s], state->context, state->horizon,
							 fraction, &series_train, &series_valid);
		n_train += series_train;
		n_valid += series_valid;
	}

	if (n_train == 0)
	{
		report_no_training_windows(state, errmsg);
		return TST_ERR_NO_DATA;
	}
	/*
	 * A series with a training window also has a validation window, so this
	 * only guards against a later change of the split.
	 */
	if (fraction > 0.0 && n_valid == 0)
	{
		tst_set_error(errmsg,
					"series too short to hold out a validation part. "
					"Set validation_fraction to 0 to train without validation");
		return TST_ERR_NO_DATA;
	}

	status = train_alloc(state, n_train, sizeof(TrainWindow), "training windows",
						 (void **) &state->train, errmsg);
	if (status != TST_OK)
		return status;
	status = train_alloc(state, n_valid, sizeof(TrainWindow), "validation windows",
						 (void **) &state->valid, errmsg);
	if (status != TST_OK)
		return status;

	for (int32_t s = 0; s < data->n_series; s++)
	{
		int64_t		series_train;
		int64_t		series_valid;
		int64_t		first_valid;

		count_series_windows(data->lengths[s], state->context, state->horizon,
							 fraction, &series_train, &series_valid);
		for (int64_t o = 0; o < series_train; o++)
			state->train[i_train++] = (TrainWindow) {s, (int32_t) o};

		/* The validation windows are the last series_valid of the series. */
		first_valid = data->lengths[s] - state->context - state->horizon - series_valid + 1;
		for (int64_t o = 0; o < series_valid; o++)
			state->valid[i_valid++] = (TrainWindow) {s, (int32_t) (first_valid + o)};
	}
	state->n_train = n_train;
	state->n_valid = n_valid;
	return TST_OK;
}

/* Draw uniformly from [0, bound) without modulo bias. */
static uint64_t
rng_below(TstRng *rng, uint64_t bound)
{
	uint64_t	threshold = (0 - bound) % bound;	/* 2^64 mod bound */
	uint64_t	r;

	do
		r = tst_rng_next(rng);
	while (r < threshold);
	return r % bound;
}

/* Fisher-Yates shuffle of the training windows. */
static void
shuffle_windows(TrainWindow *windows, int64_t count, TstRng *rng)
{
	for (int64_t i = count - 1; i > 0; i--)
	{
		int64_t		j = (int64_t) rng_below(rng, (uint64_t) i + 1);
		TrainWindow tmp = windows[i];

		windows[i] = windows[j];
		windows[j] = tmp;
	}
}

/*
 * Normalize the contexts of count windows into xn (count, L) and their
 * targets, with each window's own statistics, into yn (count, H). Fails like
 * tst_model_forecast on a window whose statistics overflow (values beyond
 * about 1e154), which would otherwise train silently on zeros.
 */
static TstStatus
fill_batch(TrainState *state, const TrainWindow *windows, int32_t count,
		   char *errmsg)
{
	int32_t		L = state->context;
	int32_t		H = state->horizon;

	for (int32_t b = 0; b < count; b++)
	{
		const double *x = state->data->values[windows[b].series] + windows[b].offset;
		float	   *yn = state->yn + (int64_t) b * H;
		double		mean;
		double		scale;

		tst_normalize_window(x, L, state->xn + (int64_t) b * L, &mean, &scale);
		if (!isfinite(mean) || !isfinite(scale))
		{
			tst_set_error(errmsg, "training window at position %lld of series %d has values too large to normalize",
						  (long long) windows[b].offset, (int) windows[b].series);
			return TST_ERR_NUMERIC;
		}
		for (int32_t h = 0; h < H; h++)
			yn[h] = (float) ((x[L + h] - mean) / scale);
	}
	return TST_OK;
}

/* Run check_interrupt and return true when the caller requests cancellation. */
static bool
interrupt_requested(const TrainState *state)
{
	const TstTrainCallbacks *callbacks = state->callbacks;

	return callbacks != NULL && callbacks->check_interrupt != NULL &&
		callbacks->check_interrupt(callbacks->ctx);
}

/* Compute the mean pinball loss over all validation windows, without dropout. */
static TstStatus
validation_loss(TrainState *state, int32_t epoch, double *loss_out, char *errmsg)
{
	double		sum = 0.0;

	for (int64_t first = 0; first < state->n_valid; first += state->batch_rows)
	{
		int64_t		remaining = state->n_valid - first;
		int32_t		count = remaining < state->batch_rows ? (int32_t) remaining : state->batch_rows;
		float		loss;
		TstStatus	status;

		if (interrupt_requested(state))
		{
			tst_set_error(errmsg, "training cancelled at epoch %d, during validation", epoch);
			return TST_ERR_CANCELLED;
		}
		status = fill_batch(state, state->valid + first, count, errmsg);
		if (status != TST_OK)
			return status;
		status = tst_model_forward(state->model, state->xn, state->yn, count,
								   false, &state->dropout_rng, NULL, &loss, errmsg);
		if (status != TST_OK)
			return status;
		if (!isfinite(loss))
		{
			tst_set_error(errmsg, "validation loss is not finite at epoch %d", epoch);
			return TST_ERR_NUMERIC;
		}
		sum += (double) loss * count;
	}
	*loss_out = sum / (double) state->n_valid;
	return TST_OK;
}

/* Copy every parameter tensor to (to_snapshot) or from the snapshot. */
static void
copy_parameters(TrainState *state, bool to_snapshot)
{
	int32_t		n_tensors = tst_model_num_tensors(state->model);
	int64_t		offset = 0;

	for (int32_t t = 0; t < n_tensors; t++)
	{
		TstTensor  *tensor = tst_model_tensor(state->model, t);
		size_t		bytes = (size_t) tensor->size * sizeof(float);

		if (to_snapshot)
			memcpy(state->best + offset, tensor->data, bytes);
		else
			memcpy(tensor->data, state->best + offset, bytes);
		offset += tensor->size;
	}
}

/* Allocate the batch buffers, the optimizer and the best-epoch snapshot. */
static TstStatus
allocate_buffers(TrainState *state, int64_t windows_per_epoch, char *errmsg)
{
	int64_t		rows = state->options->batch_size;
	int64_t		largest_set = windows_per_epoch > state->n_valid ? windows_per_epoch : state->n_valid;
	const TstAllocator *allocator = &state->allocator;
	TstStatus	status;

	/* No batch is larger than the largest set of windows. */
	if (rows > largest_set)
		rows = largest_set;
	state->batch_rows = (int32_t) rows;

	status = train_alloc(state, rows * state->context, sizeof(float),
						 "normalized batch contexts", (void **) &state->xn, errmsg);
	if (status != TST_OK)
		return status;
	status = train_alloc(state, rows * state->horizon, sizeof(float),
						 "normalized batch targets", (void **) &state->yn, errmsg);
	if (status != TST_OK)
		return status;

	status = tst_optimizer_create(state->model, allocator, &state->optimizer, errmsg);
	if (status != TST_OK)
		return status;

	if (state->n_valid > 0)
	{
		status = train_alloc(state, tst_model_num_params(state->model), sizeof(float),
							 "best-epoch parameter snapshot", (void **) &state->best, errmsg);
		if (status != TST_OK)
			return status;
	}
	return tst_model_enable_grad(state->model, errmsg);
}

/* Counters of the optimizer steps across epochs. */
typedef struct TrainProgress
{
	int64_t		step;			/* steps taken so far */
	int64_t		total_steps;	/* epochs x batches per epoch */
	bool		out_of_time;	/* max_seconds reached between two batches */
} TrainProgress;

/*
 * Run one epoch over the first windows_per_epoch shuffled training windows.
 * Sets progress->out_of_time and returns early, with the epoch incomplete,
 * once max_seconds has passed after at least one step.
 */
static TstStatus
train_epoch(TrainState *state, int32_t epoch, int64_t windows_per_epoch,
			TrainProgress *progress, double *loss_out, char *errmsg)
{
	const TstTrainOptions *options = state->options;
	double		sum = 0.0;
	TstAdamW	hparams;
	char		detail[TST_ERRMSG_LEN];

	hparams.beta1 = TRAIN_ADAM_BETA1;
	hparams.beta2 = TRAIN_ADAM_BETA2;
	hparams.eps = TRAIN_ADAM_EPS;
	hparams.weight_decay = (float) options->weight_decay;

	shuffle_windows(state->train, state->n_train, &state->shuffle_rng);

	for (int64_t first = 0; first < windows_per_epoch; first += state->batch_rows)
	{
		int64_t		remaining = windows_per_epoch - first;
		int32_t		count = remaining < state->batch_rows ? (int32_t) remaining : state->batch_rows;
		float		loss;
		TstStatus	status;

		if (interrupt_requested(state))
		{
			tst_set_error(errmsg, "training cancelled at epoch %d", epoch);
			return TST_ERR_CANCELLED;
		}
		if (options->max_seconds > 0.0 && progress->step > 0 &&
			tst_now_seconds() - state->start_seconds >= options->max_seconds)
		{
			progress->out_of_time = true;
			return TST_OK;
		}

		status = fill_batch(state, state->train + first, count, errmsg);
		if (status != TST_OK)
			return status;
		tst_model_zero_grad(state->model);
		status = tst_model_forward(state->model, state->xn, state->yn, count,
								   true, &state->dropout_rng, NULL, &loss, errmsg);
		if (status != TST_OK)
			return status;
		if (!isfinite(loss))
		{
			tst_set_error(errmsg, "training loss is not finite at epoch %d, step %lld",
						epoch, (long long) progress->step + 1);
			return TST_ERR_NUMERIC;
		}
		status = tst_model_backward(state->model, errmsg);
		if (status != TST_OK)
			return status;

		hparams.learning_rate = (float) tst_train_learning_rate(options->learning_rate,
																options->warmup_fraction,
																progress->step,
																progress->total_steps);
		status = tst_optimizer_step(state->optimizer, &hparams, (float) options->clip_norm,
									NULL, detail);
		if (status != TST_OK)
		{
			tst_set_error(errmsg, "epoch %d, step %lld: %s",
						epoch, (long long) progress->step + 1, detail);
			return status;
		}
		progress->step++;
		sum += (double) loss * count;
	}
	*loss_out = sum / (double) windows_per_epoch;
	return TST_OK;
}

/* Report one finished epoch to the on_epoch callback. */
static void
report_epoch(const TrainState *state, int32_t epoch, double train_loss,
			 double valid_loss)
{
	const TstTrainCallbacks *callbacks = state->callbacks;
	TstEpochStats stats;

	if (callbacks == NULL || callbacks->on_epoch == NULL)
		return;
	stats.epoch = epoch;
	stats.train_loss = train_loss;
	stats.validation_loss = valid_loss;
	stats.seconds = tst_now_seconds() - state->start_seconds;
	callbacks->on_epoch(callbacks->ctx, &stats);
}

/*
 * Run the epochs with early stopping and restore the best epoch. Fills the
 * result's epoch counters and history. Without validation, the history and
 * the callback report a validation loss of NaN.
 */
static TstStatus
run_epochs(TrainState *state, TstTrainResult *result, char *errmsg)
{
	const TstTrainOptions *options = state->options;
	int64_t		windows_per_epoch = state->n_train;
	int64_t		batches_per_epoch;
	double		best_loss = INFINITY;
	int32_t		epochs_without_improvement = 0;
	TrainProgress progress = {0, 0, false};
	TstStatus	status;

	if (options->max_windows_per_epoch > 0 && options->max_windows_per_epoch < windows_per_epoch)
		windows_per_epoch = options->max_windows_per_epoch;
	status = allocate_buffers(state, windows_per_epoch, errmsg);
	if (status != TST_OK)
		return status;
	batches_per_epoch = (windows_per_epoch + state->batch_rows - 1) / state->batch_rows;
	progress.total_steps = (int64_t) options->epochs * batches_per_epoch;

	for (int32_t epoch = 1; epoch <= options->epochs; epoch++)
	{
		double		train_loss = 0.0;
		double		valid_loss = NAN;

		status = train_epoch(state, epoch, windows_per_epoch, &progress, &train_loss, errmsg);
		if (status != TST_OK)
			return status;
		if (progress.out_of_time)
			break;

		if (state->n_valid > 0)
		{
			status = validation_loss(state, epoch, &valid_loss, errmsg);
			if (status != TST_OK)
				return status;
		}

		result->epochs_run = epoch;
		result->n_history = epoch;
		result->train_loss[epoch - 1] = train_loss;
		result->validation_loss[epoch - 1] = valid_loss;
		report_epoch(state, epoch, train_loss, valid_loss);

		if (state->n_valid == 0)
			continue;
		if (valid_loss < best_loss)
		{
			best_loss = valid_loss;
			result->best_epoch = epoch;
			epochs_without_improvement = 0;
			copy_parameters(state, true);
		}
		else if (++epochs_without_improvement >= options->patience)
			break;
	}

	/*
	 * NOTE: when max_seconds ends the first epoch early, no epoch has a
	 * validation loss and the partly trained parameters are kept.
	 */
	if (result->best_epoch > 0)
		copy_parameters(state, false);
	else if (state->n_valid == 0)
		result->best_epoch = result->epochs_run;
	return TST_OK;
}

/*
 * Calibration
 *
 * Split-conformal, per horizon step and per pair of levels (tau, 1 - tau),
 * in the style of conformalized quantile regression (docs/model.md,
 * "Calibration"). For the interval [lo, hi] of a pair at step h, each
 * validation window scores E = max(lo - y, y - hi) in normalized units; the
 * offset d is the k-th smallest score, k = ceil((n + 1) (tau_hi - tau_lo))
 * capped at n, and the calibrated interval is [lo - d, hi + d].
 */

/* Scores kept at most, over all pairs and steps; more windows are thinned. */
#define CALIBRATION_MAX_SCORES ((int64_t) 1 << 24)

/* Find the pairs (lo, hi) of levels with tau_lo + tau_hi = 1, tau_lo < 0.5. */
static int32_t
level_pairs(const TstConfig *config, int32_t *lo, int32_t *hi)
{
	int32_t		n = 0;

	for (int32_t a = 0; a < config->n_quantiles; a++)
		for (int32_t b = config->n_quantiles - 1; b > a; b--)
			if (fabs((double) config->quantiles[a] + config->quantiles[b] - 1.0) < 1e-6)
			{
				lo[n] = a;
				hi[n] = b;
				n++;
				break;
			}
	return n;
}

static int
compare_floats(const void *a, const void *b)
{
	float		x = *(const float *) a;
	float		y = *(const float *) b;

	return (x > y) - (x < y);
}

/* Sort n floats ascending; n is at most TST_MAX_QUANTILES. */
static void
sort_levels(float *v, int32_t n)
{
	for (int32_t i = 1; i < n; i++)
	{
		float		key = v[i];
		int32_t		j = i - 1;

		while (j >= 0 && v[j] > key)
		{
			v[j + 1] = v[j];
			j--;
		}
		v[j + 1] = key;
	}
}

/*
 * Set the model's calibration offsets from every stride-th validation window
 * (stride 1 unless the scores would exceed CALIBRATION_MAX_SCORES). Levels
 * without a partner keep offset 0. Sets result->calibration_windows.
 */
static TstStatus
calibrate(TrainState *state, TstTrainResult *result, char *errmsg)
{
	const TstConfig *config = tst_model_config(state->model);
	int32_t		H = config->horizon;
	int32_t		Q = config->n_quantiles;
	int32_t		lo[TST_MAX_QUANTILES];
	int32_t		hi[TST_MAX_QUANTILES];
	int32_t		n_pairs = level_pairs(config, lo, hi);
	int64_t		per_window;
	int64_t		stride;
	int64_t		n_used;
	int64_t		used = 0;
	float	   *scores = NULL;
	float	   *pred = NULL;
	float	   *offsets = NULL;
	TrainWindow *batch = NULL;
	TstStatus	status;

	if (n_pairs == 0 || state->n_valid == 0)
	{
		tst_model_set_calibration(state->model, NULL);
		return TST_OK;
	}
	per_window = (int64_t) H * n_pairs;
	stride = (state->n_valid * per_window + CALIBRATION_MAX_SCORES - 1) / CALIBRATION_MAX_SCORES;
	if (stride < 1)
		stride = 1;
	n_used = (state->n_valid + stride - 1) / stride;

	status = train_alloc(state, n_used * per_window, sizeof(float), "calibration scores",
						 (void **) &scores, errmsg);
	if (status == TST_OK)
		status = train_alloc(state, (int64_t) state->batch_rows * H * Q, sizeof(float),
							 "calibration predictions", (void **) &pred, errmsg);
	if (status == TST_OK)
		status = train_alloc(state, (int64_t) H * Q, sizeof(float), "calibration offsets",
							 (void **) &offsets, errmsg);
	if (status == TST_OK)
		status = train_alloc(state, state->batch_rows, sizeof(TrainWindow),
							 "calibration windows", (void **) &batch, errmsg);

	/* Score the windows: scores[(p * H + h) * n_used + i]. */
	while (status == TST_OK && used < n_used)
	{
		int32_t		count = 0;

		if (interrupt_requested(state))
		{
			tst_set_error(errmsg, "training cancelled during calibration");
			status = TST_ERR_CANCELLED;
			break;
		}
		while (count < state->batch_rows && used + count < n_used)
		{
			batch[count] = state->valid[(used + count) * stride];
			count++;
		}
		status = fill_batch(state, batch, count, errmsg);
		if (status != TST_OK)
			break;
		status = tst_model_forward(state->model, state->xn, NULL, count, false, NULL,
								   pred, NULL, errmsg);
		if (status != TST_OK)
			break;
		for (int32_t b = 0; b < count; b++)
			for (int32_t h = 0; h < H; h++)
			{
				float	   *v = pred + ((int64_t) b * H + h) * Q;
				float		y = state->yn[(int64_t) b * H + h];

				sort_levels(v, Q);
				for (int32_t p = 0; p < n_pairs; p++)
				{
					float		below = v[lo[p]] - y;
					float		above = y - v[hi[p]];

					scores[((int64_t) p * H + h) * n_used + used + b] = below > above ? below : above;
				}
			}
		used += count;
	}

	if (status == TST_OK)
	{
		memset(offsets, 0, (size_t) H * Q * sizeof(float));
		for (int32_t p = 0; p < n_pairs; p++)
		{
			double		level = (double) config->quantiles[hi[p]] - config->quantiles[lo[p]];
			int64_t		k = (int64_t) ceil((double) (n_used + 1) * level - 1e-9);

			if (k > n_used)
				k = n_used;
			if (k < 1)
				k = 1;
			for (int32_t h = 0; h < H; h++)
			{
				float	   *column = scores + ((int64_t) p * H + h) * n_used;

				qsort(column, (size_t) n_used, sizeof(float), compare_floats);
				offsets[h * Q + lo[p]] = -column[k - 1];
				offsets[h * Q + hi[p]] = column[k - 1];
			}
		}
		tst_model_set_calibration(state->model, offsets);
		result->calibration_windows = n_used;
	}
	train_free(state, batch);
	train_free(state, offsets);
	train_free(state, pred);
	train_free(state, scores);
	return status;
}

/* Release what the loop allocated; the model's gradients stay. */
static void
release_state(TrainState *state)
{
	train_free(state, state->best);
	tst_optimizer_free(state->optimizer);
	train_free(state, state->yn);
	train_free(state, state->xn);
	train_free(state, state->valid);
	train_free(state, state->train);
}

TstStatus
tst_train(TstModel *model, const TstSeriesSet *data,
		  const TstTrainOptions *options,
		  const TstTrainCallbacks *callbacks,
		  TstTrainResult *result, char *errmsg)
{
	TrainState	state;
	const TstConfig *config;
	TstStatus	status;

	if (model == NULL || options == NULL || result == NULL)
	{
		tst_set_error(errmsg, "model, options and result must not be NULL");
		return TST_ERR_ARGUMENT;
	}
	memset(result, 0, sizeof(*result));

	memset(&state, 0, sizeof(state));
	state.start_seconds = tst_now_seconds();
	state.model = model;
	state.data = data;
	state.options = options;
	state.callbacks = callbacks;
	state.allocator = options->allocator != NULL ? *options->allocator : tst_malloc_allocator;
	config = tst_model_config(model);
	state.context = config->context;
	state.horizon = config->horizon;
	tst_rng_seed(&state.shuffle_rng, options->seed);
	tst_rng_seed(&state.dropout_rng, options->seed ^ TRAIN_DROPOUT_SEED_MIX);

	status = check_options(options, errmsg);
	if (status == TST_OK)
		status = check_data(data, errmsg);
	if (status == TST_OK)
		status = enumerate_windows(&state, errmsg);
	if (status == TST_OK)
	{
		result->train_windows = state.n_train;
		result->validation_windows = state.n_valid;
		status = run_epochs(&state, result, errmsg);
	}
	if (status == TST_OK)
		status = calibrate(&state, result, errmsg);

	release_state(&state);
	result->seconds = tst_now_seconds() - state.start_seconds;
	return status;
}
