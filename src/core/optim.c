/*
 * optim.c
 *		AdamW with global gradient-norm clipping.
 *
 * The optimizer keeps a first moment m and a second moment v for every
 * parameter, in one allocation laid out in the model's tensor order: m for
 * all tensors, then v for all tensors. Each step
 *
 *   1. sums the squares of every gradient in double and takes the square
 *      root, giving the global norm. A non-finite norm stops the step before
 *      anything changes, so a NaN gradient never reaches the parameters or
 *      the moments.
 *   2. scales every gradient by max_norm / norm when the norm exceeds
 *      max_norm. The scale is applied as the gradients are read, so the
 *      gradient buffers stay unchanged.
 *   3. updates the moments and the parameters with bias correction:
 *        m = beta1 m + (1 - beta1) g
 *        v = beta2 v + (1 - beta2) g^2
 *        p = p - lr (m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps)
 *                    + wd p)
 *      where the decoupled weight decay wd applies only to 2-D tensors other
 *      than "pos" (the learned position table is not a weight matrix).
 */
#include "kernels.h"
#include "tst_core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct TstOptimizer
{
	TstModel   *model;
	TstAllocator allocator;
	int64_t		step;			/* steps taken so far */
	int64_t		n_params;		/* total parameter count of the model */
	float	   *m;				/* (n_params,) first moments */
	float	   *v;				/* (n_params,) second moments */
};


/* Whether AdamW decays this tensor: 2-D weight matrices, but not "pos". */
static bool
tensor_is_decayed(const TstTensor *tensor)
{
	return tensor->ndim == 2 && strcmp(tensor->name, "pos") != 0;
}

/*
 * Allocate the optimizer and its moments, zeroed, for every parameter of
 * the model. The model's gradients need not exist yet.
 */
TstStatus
tst_optimizer_create(TstModel *model, const TstAllocator *allocator,
					 TstOptimizer **optimizer, char *errmsg)
{
	TstOptimizer *opt;
	int64_t		n_params;
	size_t		header_bytes;
	size_t		bytes;
	char	   *block;

	if (optimizer == NULL)
	{
		tst_set_error(errmsg, "optimizer output pointer is NULL");
		return TST_ERR_ARGUMENT;
	}
	*optimizer = NULL;
	if (model == NULL || allocator == NULL || allocator->alloc == NULL)
	{
		tst_set_error(errmsg, "model or allocator is NULL");
		return TST_ERR_ARGUMENT;
	}

	n_params = tst_model_num_params(model);
	if (n_params < 0)
	{
		tst_set_error(errmsg, "model reports a negative parameter count");
		return TST_ERR_ARGUMENT;
	}

	/* The struct and both moment arrays share one allocation. */
	header_bytes = (sizeof(TstOptimizer) + 15) & ~(size_t) 15;
	if ((uint64_t) n_params > (TST_MAX_ALLOC_BYTES - header_bytes) / (2 * sizeof(float)))
	{
		tst_set_error(errmsg,
					"optimizer moments for %lld parameters exceed the %zu-byte allocation limit",
					(long long) n_params, TST_MAX_ALLOC_BYTES);
		return TST_ERR_TOO_LARGE;
	}
	bytes = header_bytes + (size_t) n_params * 2 * sizeof(float);

	block = allocator->alloc(allocator->ctx, bytes);
	if (block == NULL)
	{
		tst_set_error(errmsg, "out of memory allocating %zu bytes of optimizer state", bytes);
		return TST_ERR_NOMEM;
	}

	opt = (TstOptimizer *) block;
	opt->model = model;
	opt->allocator = *allocator;
	opt->step = 0;
	opt->n_params = n_params;
	opt->m = (float *) (block + header_bytes);
	opt->v = opt->m + n_params;
	memset(opt->m, 0, (size_t) n_params * 2 * sizeof(float));

	*optimizer = opt;
	return TST_OK;
}

void
tst_optimizer_free(TstOptimizer *optimizer)
{
	if (optimizer == NULL)
		return;
	if (optimizer->allocator.free != NULL)
		optimizer->allocator.free(optimizer->allocator.ctx, optimizer);
}

/* Reject hyperparameters outside the ranges where AdamW is defined. */
static TstStatus
check_hparams(const TstAdamW *hparams, float max_norm, char *errmsg)
{
	if (hparams == NULL)
	{
		tst_set_error(errmsg, "AdamW hyperparameters are NULL");
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(hparams->learning_rate) || hparams->learning_rate < 0.0f)
	{
		tst_set_error(errmsg, "invalid learning rate %g: must be finite and >= 0",
					(double) hparams->learning_rate);
		return TST_ERR_ARGUMENT;
	}
	if (!(hparams->beta1 >= 0.0f && hparams->beta1 < 1.0f))
	{
		tst_set_error(errmsg, "invalid beta1 %g: must be in [0, 1)",
					(double) hparams->beta1);
		return TST_ERR_ARGUMENT;
	}
	if (!(hparams->beta2 >= 0.0f && hparams->beta2 < 1.0f))
	{
		tst_set_error(errmsg, "invalid beta2 %g: must be in [0, 1)",
					(double) hparams->beta2);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(hparams->eps) || hparams->eps <= 0.0f)
	{
		tst_set_error(errmsg, "invalid eps %g: must be finite and > 0",
					(double) hparams->eps);
		return TST_ERR_ARGUMENT;
	}
	if (!isfinite(hparams->weight_decay) || hparams->weight_decay < 0.0f)
	{
		tst_set_error(errmsg, "invalid weight decay %g: must be finite and >= 0",
					(double) hparams->weight_decay);
		return TST_ERR_ARGUMENT;
	}
	if (isnan(max_norm))
	{
		tst_set_error(errmsg, "invalid clipping norm: NaN");
		return TST_ERR_ARGUMENT;
	}
	return TST_OK;
}

/*
 * Compute the global gradient norm in double. A non-finite result returns
 * TST_ERR_NUMERIC with a message naming the first tensor at fault.
 */
static TstStatus
global_grad_norm(TstModel *model, double *norm, char *errmsg)
{
	int32_t		n_tensors = tst_model_num_tensors(model);
	double		total = 0.0;

	for (int32_t t = 0; t < n_tensors; t++)
	{
		const TstTensor *tensor = tst_model_tensor(model, t);
		double		sum = 0.0;

		if (tensor->grad == NULL)
		{
			tst_set_error(errmsg, "gradients of tensor \"%s\" are not allocated",
						tensor->name);
			return TST_ERR_ARGUMENT;
		}
		for (int64_t i = 0; i < tensor->size; i++)
			sum += (double) tensor->grad[i] * (double) tensor->grad[i];
		if (!isfinite(sum))
		{
			tst_set_error(errmsg, "gradient norm is not finite: tensor \"%s\" has a non-finite gradient",
						tensor->name);
			return TST_ERR_NUMERIC;
		}
		total += sum;
	}

	*norm = sqrt(total);
	if (!isfinite(*norm))
	{
		tst_set_error(errmsg, "gradient norm is not finite (overflow)");
		return TST_ERR_NUMERIC;
	}
	return TST_OK;
}

/* AdamW constants of one tensor's update. */
typedef struct AdamWStep
{
	float		lr;
	float		beta1;
	float		beta2;
	float		eps;
	float		decay;
	float		grad_scale;
	float		bias1;
	float		bias2;
} AdamWStep;

/* Apply the AdamW update to element i of p, m and v from grad. */
static inline __attribute__((always_inline)) void
adamw_element(float *p, float *m, float *v, const float *grad, int64_t i,
			  const AdamWStep *k)
{
	float		g = grad[i] * k->grad_scale;

	m[i] = k->beta1 * m[i] + (1.0f - k->beta1) * g;
	v[i] = k->beta2 * v[i] + (1.0f - k->beta2) * g * g;
	p[i] -= k->lr * ((m[i] / k->bias1) / (sqrtf(v[i] / k->bias2) + k->eps) + k->decay * p[i]);
}

/*
 * Update p, m and v (n) from grad, which never overlap. With -fno-math-errno
 * (Makefile) -O2 vectorizes the blocks of 8, and gives the same bits.
 */
static void
adamw_update_arrays(float *restrict p, float *restrict m, float *restrict v,
					const float *restrict grad, int64_t n, AdamWStep k)
{
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			adamw_element(p, m, v, grad, i + l, &k);
	for (; i < n; i++)
		adamw_element(p, m, v, grad, i, &k);
}

/* Apply one AdamW update to a tensor. m and v are its slices of the moments. */
static void
adamw_update(TstTensor *tensor, float *m, float *v, const TstAdamW *hparams,
			 float grad_scale, float bias1, float bias2)
{
	AdamWStep	k;

	k.lr = hparams->learning_rate;
	k.beta1 = hparams->beta1;
	k.beta2 = hparams->beta2;
	k.eps = hparams->eps;
	k.decay = tensor_is_decayed(tensor) ? hparams->weight_decay : 0.0f;
	k.grad_scale = grad_scale;
	k.bias1 = bias1;
	k.bias2 = bias2;
	adamw_update_arrays(tensor->data, m, v, tensor->grad, tensor->size, k);
}

TstStatus
tst_optimizer_step(TstOptimizer *optimizer, const TstAdamW *hparams,
				   float max_norm, float *grad_norm, char *errmsg)
{
	TstStatus	status;
	double		norm;
	float		grad_scale = 1.0f;
	float		bias1;
	float		bias2;
	int32_t		n_tensors;
	int64_t		offset = 0;

	if (optimizer == NULL)
	{
		tst_set_error(errmsg, "optimizer is NULL");
		return TST_ERR_ARGUMENT;
	}
	status = check_hparams(hparams, max_norm, errmsg);
	if (status != TST_OK)
		return status;

	status = global_grad_norm(optimizer->model, &norm, errmsg);
	if (grad_norm != NULL)
		*grad_norm = (status == TST_OK) ? (float) norm : NAN;
	if (status != TST_OK)
		return status;

	if (max_norm > 0.0f && norm > (double) max_norm)
		grad_scale = (float) ((double) max_norm / norm);

	optimizer->step++;
	bias1 = (float) (1.0 - pow((double) hparams->beta1, (double) optimizer->step));
	bias2 = (float) (1.0 - pow((double) hparams->beta2, (double) optimizer->step));

	n_tensors = tst_model_num_tensors(optimizer->model);
	for (int32_t t = 0; t < n_tensors; t++)
	{
		TstTensor  *tensor = tst_model_tensor(optimizer->model, t);

		adamw_update(tensor, optimizer->m + offset, optimizer->v + offset,
					 hparams, grad_scale, bias1, bias2);
		offset += tensor->size;
	}
	return TST_OK;
}
