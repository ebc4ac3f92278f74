/*
 * model.c
 *		The temporal sparse transformer: parameters, forward, backward and
 *		forecasting, as docs/model.md specifies.
 *
 * Memory is planned in three blocks, each one allocation carved into tensors:
 *   - parameters, allocated by tst_model_create, in the documented order;
 *   - gradients, the same layout, allocated by tst_model_enable_grad;
 *   - activations for a batch capacity, allocated by the first forward pass
 *     and reallocated only when a larger batch arrives. Backward scratch is a
 *     separate block planned the same way when the first backward runs.
 * Rows of all windows of a batch are contiguous, so every linear layer is one
 * sgemm over B*N rows.
 *
 * The model keeps no global state, so several models may live in one process.
 * A model itself is not safe to use from two threads at once.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"

/*
 * Windows per forward pass of tst_model_forecast: at most FORECAST_CHUNK, and
 * fewer when their activations exceed FORECAST_BUDGET bytes, because a cached
 * model keeps its activations for the life of the backend.
 */
#define FORECAST_CHUNK 256
#define FORECAST_BUDGET ((int64_t) 32 * 1024 * 1024)
#define FORECAST_MIN_CHUNK 16

/* Carved blocks start on 64-byte boundaries. */
#define ALIGN_FLOATS 16

#define TENSOR_NAME_LEN 48

/* Tensor roles, which decide the initialization. */
typedef enum TensorRole
{
	ROLE_WEIGHT,				/* uniform in +-1/sqrt(in) */
	ROLE_BIAS,					/* zero */
	ROLE_NORM_WEIGHT,			/* one */
	ROLE_NORM_BIAS,				/* zero */
	ROLE_POSITION				/* uniform in +-0.02 */
} TensorRole;

/* Tensor indices: three embedding tensors, then per block, then the head. */
enum
{
	T_PATCH_W, T_PATCH_B, T_POS, T_FIRST_BLOCK
};
enum
{
	B_LN1_W, B_LN1_B, B_QKV_W, B_QKV_B, B_OUT_W, B_OUT_B,
	B_LN2_W, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, TENSORS_PER_BLOCK
};
enum
{
	F_LNF_W, F_LNF_B, F_HEAD_W, F_HEAD_B, TENSORS_AFTER_BLOCKS
};

/* Activations of one block for a batch; R = B*N rows. */
typedef struct BlockActs
{
	float	   *ln1;			/* (R, D) */
	float	   *ln1_mean;		/* (R) */
	float	   *ln1_rstd;		/* (R) */
	float	   *qkv;			/* (R, 3D) */
	float	   *probs;			/* (B, NH, nnz) */
	float	   *atty;			/* (R, D) heads concatenated */
	float	   *attn_mask;		/* (R, D) dropout scales, NULL without dropout */
	float	   *h_mid;			/* (R, D) residual stream after attention */
	float	   *ln2;			/* (R, D) */
	float	   *ln2_mean;		/* (R) */
	float	   *ln2_rstd;		/* (R) */
	float	   *fc1;			/* (R, F) before GELU */
	float	   *gelu;			/* (R, F) */
	float	   *ffn_mask;		/* (R, D) dropout scales, NULL without dropout */
	float	   *h_out;			/* (R, D) residual stream after the block */
} BlockActs;

typedef struct Activations
{
	float	   *inputs;			/* (B, L) normalized windows */
	float	   *targets;		/* (B, H) normalized targets */
	double	   *means;			/* (B) window statistics for forecasting */
	double	   *scales;			/* (B) */
	float	   *patches;		/* (B, N, P) */
	float	   *h0;				/* (R, D) embeddings after dropout */
	float	   *embed_mask;		/* (R, D) dropout scales, NULL without dropout */
	float	   *proj;			/* (R, D) scratch for a sublayer output */
	BlockActs  *blocks;			/* (n_layers) */
	float	   *lnf;			/* (R, D) head input, flattened as (B, N*D) */
	float	   *lnf_mean;		/* (R) */
	float	   *lnf_rstd;		/* (R) */
	float	   *pred;			/* (B, H*Q) */
} Activations;

/* Gradient scratch for backward; R = B*N rows. */
typedef struct GradActs
{
	float	   *dh;				/* (R, D) gradient of the residual stream */
	float	   *dtmp;			/* (R, D) gradient of a sublayer output */
	float	   *dln;			/* (R, D) gradient of a layer norm output */
	float	   *datty;			/* (R, D) */
	float	   *dqkv;			/* (R, 3D) */
	float	   *dfc1;			/* (R, F) */
	float	   *dgelu;			/* (R, F) */
	float	   *dpred;			/* (B, H*Q) */
} GradActs;

struct TstModel
{
	TstConfig	config;
	TstAllocator allocator;
	int32_t		n_patches;		/* N */
	TstPattern	pattern;

	int32_t		n_tensors;
	TstTensor  *tensors;		/* (n_tensors) in documented order */
	TensorRole *roles;			/* (n_tensors) */
	char	   *names;			/* (n_tensors, TENSOR_NAME_LEN) */
	int64_t		n_params;
	float	   *params;			/* (n_params) */
	float	   *grads;			/* (n_params), NULL until enable_grad */
	float	   *calibration;	/* (H, Q) interval offsets, normalized units */

	BlockActs  *block_acts;		/* (n_layers) */
	Activations acts;
	float	   *acts_memory;
	int32_t		acts_capacity;	/* windows the activations hold, 0 if none */

	GradActs	grad_acts;
	float	   *grad_acts_memory;
	int32_t		grad_acts_capacity;

	int32_t		last_batch;		/* windows of the last forward pass */
	bool		last_has_loss;	/* the last forward pass had targets */
	bool		last_dropout;	/* the last forward pass applied dropout */
};

/* Shortcuts to a model's parameter data and gradients. */
#define PARAM(m, i) ((m)->tensors[(i)].data)
#define GRAD(m, i) ((m)->tensors[(i)].grad)

static int32_t
block_tensor(int32_t layer, int32_t which)
{
	return T_FIRST_BLOCK + layer * TENSORS_PER_BLOCK + which;
}

static int32_t
final_tensor(const TstModel *model, int32_t which)
{
	return T_FIRST_BLOCK + model->config.n_layers * TENSORS_PER_BLOCK + which;
}

/*
 * Tensor table
 */

static void
set_tensor(TstModel *model, int32_t index, const char *name, TensorRole role,
		   int32_t rows, int32_t cols)
{
	TstTensor  *t = &model->tensors[index];
	char	   *slot = model->names + (size_t) index * TENSOR_NAME_LEN;

	snprintf(slot, TENSOR_NAME_LEN, "%s", name);
	t->name = slot;
	t->ndim = cols > 0 ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols > 0 ? cols : 0;
	t->size = (int64_t) rows * (cols > 0 ? cols : 1);
	t->data = NULL;
	t->grad = NULL;
	model->roles[index] = role;
}

static void
set_block_tensor(TstModel *model, int32_t layer, int32_t which, const char *suffix,
				 TensorRole role, int32_t rows, int32_t cols)
{
	char		name[TENSOR_NAME_LEN];

	snprintf(name, sizeof(name), "blocks.%d.%s", (int) layer, suffix);
	set_tensor(model, block_tensor(layer, which), name, role, rows, cols);
}

/* Fill names, shapes and roles of every tensor, in the documented order. */
static void
build_tensor_table(TstModel *model)
{
	const TstConfig *c = &model->config;
	int32_t		D = c->d_model;
	int32_t		F = c->d_ff;
	int32_t		N = model->n_patches;

	set_tensor(model, T_PATCH_W, "patch.weight", ROLE_WEIGHT, D, c->patch_len);
	set_tensor(model, T_PATCH_B, "patch.bias", ROLE_BIAS, D, 0);
	set_tensor(model, T_POS, "pos", ROLE_POSITION, N, D);
	for (int32_t l = 0; l < c->n_layers; l++)
	{
		set_block_tensor(model, l, B_LN1_W, "ln1.weight", ROLE_NORM_WEIGHT, D, 0);
		set_block_tensor(model, l, B_LN1_B, "ln1.bias", ROLE_NORM_BIAS, D, 0);
		set_block_tensor(model, l, B_QKV_W, "attn.qkv.weight", ROLE_WEIGHT, 3 * D, D);
		set_block_tensor(model, l, B_QKV_B, "attn.qkv.bias", ROLE_BIAS, 3 * D, 0);
		set_block_tensor(model, l, B_OUT_W, "attn.out.weight", ROLE_WEIGHT, D, D);
		set_block_tensor(model, l, B_OUT_B, "attn.out.bias", ROLE_BIAS, D, 0);
		set_block_tensor(model, l, B_LN2_W, "ln2.weight", ROLE_NORM_WEIGHT, D, 0);
		set_block_tensor(model, l, B_LN2_B, "ln2.bias", ROLE_NORM_BIAS, D, 0);
		set_block_tensor(model, l, B_FC1_W, "ffn.fc1.weight", ROLE_WEIGHT, F, D);
		set_block_tensor(model, l, B_FC1_B, "ffn.fc1.bias", ROLE_BIAS, F, 0);
		set_block_tensor(model, l, B_FC2_W, "ffn.fc2.weight", ROLE_WEIGHT, D, F);
		set_block_tensor(model, l, B_FC2_B, "ffn.fc2.bias", ROLE_BIAS, D, 0);
	}
	set_tensor(model, final_tensor(model, F_LNF_W), "ln_f.weight", ROLE_NORM_WEIGHT, D, 0);
	set_tensor(model, final_tensor(model, F_LNF_B), "ln_f.bias", ROLE_NORM_BIAS, D, 0);
	set_tensor(model, final_tensor(model, F_HEAD_W), "head.weight", ROLE_WEIGHT,
			   c->horizon * c->n_quantiles, N * D);
	set_tensor(model, final_tensor(model, F_HEAD_B), "head.bias", ROLE_BIAS,
			   c->horizon * c->n_quantiles, 0);
}

/* Point every tensor's data (or grad) into a contiguous block. */
static void
carve_params(TstModel *model, float *block, bool grads)
{
	int64_t		offset = 0;

	for (int32_t i = 0; i < model->n_tensors; i++)
	{
		if (grads)
			model->tensors[i].grad = block + offset;
		else
			model->tensors[i].data = block + offset;
		offset += model->tensors[i].size;
	}
}

static void *
model_alloc(TstModel *model, size_t size)
{
	return model->allocator.alloc(model->allocator.ctx, size);
}

TstStatus
tst_model_create(const TstConfig *config, const TstAllocator *allocator,
				 TstModel **model_out, char *errmsg)
{
	TstModel   *model;
	TstStatus	status;
	int32_t		n_tensors;

	if (model_out == NULL || allocator == NULL || allocator->alloc == NULL)
	{
		tst_set_error(errmsg, "model output or allocator is missing");
		return TST_ERR_ARGUMENT;
	}
	*model_out = NULL;
	status = tst_config_validate(config, errmsg);
	if (status != TST_OK)
		return status;

	model = allocator->alloc(allocator->ctx, sizeof(TstModel));
	if (model == NULL)
	{
		tst_set_error(errmsg, "out of memory for a model");
		return TST_ERR_NOMEM;
	}
	memset(model, 0, sizeof(*model));
	model->config = *config;
	model->allocator = *allocator;
	model->n_patches = tst_config_num_patches(config);

	n_tensors = T_FIRST_BLOCK + config->n_layers * TENSORS_PER_BLOCK + TENSORS_AFTER_BLOCKS;
	model->n_tensors = n_tensors;
	model->tensors = model_alloc(model, (size_t) n_tensors * sizeof(TstTensor));
	model->roles = model_alloc(model, (size_t) n_tensors * sizeof(TensorRole));
	model->names = model_alloc(model, (size_t) n_tensors * TENSOR_NAME_LEN);
	model->block_acts = model_alloc(model, (size_t) config->n_layers * sizeof(BlockActs));
	if (model->tensors == NULL || model->roles == NULL || model->names == NULL ||
		model->block_acts == NULL)
	{
		tst_model_free(model);
		tst_set_error(errmsg, "out of memory for the tensor table of %d tensors", (int) n_tensors);
		return TST_ERR_NOMEM;
	}
	build_tensor_table(model);

	/* tst_config_validate has checked that this block fits the limit. */
	for (int32_t i = 0; i < n_tensors; i++)
		model->n_params += model->tensors[i].size;
	model->params = model_alloc(model, (size_t) model->n_params * sizeof(float));
	if (model->params == NULL)
	{
		tst_set_error(errmsg, "out of memory for %lld parameters", (long long) model->n_params);
		tst_model_free(model);
		return TST_ERR_NOMEM;
	}
	carve_params(model, model->params, false);

	model->calibration = model_alloc(model, (size_t) config->horizon * config->n_quantiles *
									 sizeof(float));
	if (model->calibration == NULL)
	{
		tst_set_error(errmsg, "out of memory for the calibration offsets");
		tst_model_free(model);
		return TST_ERR_NOMEM;
	}
	memset(model->calibration, 0, (size_t) config->horizon * config->n_quantiles * sizeof(float));

	status = tst_pattern_build(&model->pattern, config->attention, config->window,
							   model->n_patches, allocator, errmsg);
	if (status != TST_OK)
	{
		tst_model_free(model);
		return status;
	}

	*model_out = model;
	return TST_OK;
}

void
tst_model_free(TstModel *model)
{
	TstAllocator allocator;

	if (model == NULL)
		return;
	allocator = model->allocator;
	tst_pattern_free(&model->pattern, &allocator);
	tst_release(&allocator, model->grad_acts_memory);
	tst_release(&allocator, model->acts_memory);
	tst_release(&allocator, model->grads);
	tst_release(&allocator, model->calibration);
	tst_release(&allocator, model->params);
	tst_release(&allocator, model->block_acts);
	tst_release(&allocator, model->names);
	tst_release(&allocator, model->roles);
	tst_release(&allocator, model->tensors);
	tst_release(&allocator, model);
}

const TstConfig *
tst_model_config(const TstModel *model)
{
	return &model->config;
}

float *
tst_model_calibration(TstModel *model)
{
	return model->calibration;
}

void
tst_model_set_calibration(TstModel *model, const float *offsets)
{
	size_t		bytes = (size_t) model->config.horizon * model->config.n_quantiles * sizeof(float);

	if (offsets == NULL)
		memset(model->calibration, 0, bytes);
	else
		memcpy(model->calibration, offsets, bytes);
}

int32_t
tst_model_num_tensors(const TstModel *model)
{
	return model->n_tensors;
}

TstTensor *
tst_model_tensor(TstModel *model, int32_t index)
{
	if (index < 0 || index >= model->n_tensors)
		return NULL;
	return &model->tensors[index];
}

int64_t
tst_model_num_params(const TstModel *model)
{
	return model->n_params;
}

/* Draw every tensor from one seed, in table order (docs/model.md). */
void
tst_model_init(TstModel *model, uint64_t seed)
{
	TstRng		rng;

	tst_rng_seed(&rng, seed);
	for (int32_t i = 0; i < model->n_tensors; i++)
	{
		TstTensor  *t = &model->tensors[i];
		double		bound = 0.0;

		switch (model->roles[i])
		{
			case ROLE_WEIGHT:
				bound = 1.0 / sqrt((double) t->shape[1]);
				break;
			case ROLE_POSITION:
				bound = 0.02;
				break;
			case ROLE_NORM_WEIGHT:
				for (int64_t j = 0; j < t->size; j++)
					t->data[j] = 1.0f;
				continue;
			case ROLE_BIAS:
			case ROLE_NORM_BIAS:
				memset(t->data, 0, (size_t) t->size * sizeof(float));
				continue;
		}
		for (int64_t j = 0; j < t->size; j++)
			t->data[j] = (float) ((2.0 * tst_rng_uniform(&rng) - 1.0) * bound);
	}
}

/*
 * Memory planning
 *
 * A plan walks the same list of (pointer, count) entries twice: once with no
 * base to total the size, once to carve the pointers out of the block.
 */

typedef struct Planner
{
	float	   *base;			/* NULL while counting */
	int64_t		used;			/* floats so far, aligned */
	bool		overflow;
} Planner;

/*
 * Reserve rows * width floats, and point target at them when carving. A NULL
 * target reserves nothing. Counting writes nothing, so that a failed plan
 * leaves the current pointers intact.
 */
static void
plan(Planner *planner, float **target, int64_t rows, int64_t width)
{
	int64_t		count;

	if (target == NULL)
		return;
	if (width != 0 && rows > INT64_MAX / 4 / width)
	{
		planner->overflow = true;
		return;
	}
	count = rows * width;
	count = (count + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
	if (count > INT64_MAX / 4 - planner->used)
	{
		planner->overflow = true;
		return;
	}
	if (planner->base != NULL)
		*target = planner->base + planner->used;
	planner->used += count;
}

/* Reserve n doubles, as 2n floats on an aligned start. */
static void
plan_doubles(Planner *planner, double **target, int64_t n)
{
	float	   *start = NULL;

	plan(planner, &start, n, 2);
	if (planner->base != NULL)
		*target = (double *) (void *) start;
}

/* Plan the forward activations of B windows. */
static void
plan_activations(Planner *pl, TstModel *model, Activations *a, int64_t B)
{
	const TstConfig *c = &model->config;
	int64_t		N = model->n_patches;
	int64_t		D = c->d_model;
	int64_t		R = B * N;
	int64_t		HQ = (int64_t) c->horizon * c->n_quantiles;
	bool		dropout = c->dropout > 0.0f;

	if (pl->base != NULL)
	{
		memset(a, 0, sizeof(*a));
		memset(model->block_acts, 0, (size_t) c->n_layers * sizeof(BlockActs));
		a->blocks = model->block_acts;
	}
	plan(pl, &a->inputs, B, c->context);
	plan(pl, &a->targets, B, c->horizon);
	plan_doubles(pl, &a->means, B);
	plan_doubles(pl, &a->scales, B);
	plan(pl, &a->patches, R, c->patch_len);
	plan(pl, &a->h0, R, D);
	plan(pl, dropout ? &a->embed_mask : NULL, R, D);
	plan(pl, &a->proj, R, D);
	for (int32_t l = 0; l < c->n_layers; l++)
	{
		BlockActs  *ba = &model->block_acts[l];

		plan(pl, &ba->ln1, R, D);
		plan(pl, &ba->ln1_mean, R, 1);
		plan(pl, &ba->ln1_rstd, R, 1);
		plan(pl, &ba->qkv, R, 3 * D);
		plan(pl, &ba->probs, B * c->n_heads, model->pattern.nnz);
		plan(pl, &ba->atty, R, D);
		plan(pl, dropout ? &ba->attn_mask : NULL, R, D);
		plan(pl, &ba->h_mid, R, D);
		plan(pl, &ba->ln2, R, D);
		plan(pl, &ba->ln2_mean, R, 1);
		plan(pl, &ba->ln2_rstd, R, 1);
		plan(pl, &ba->fc1, R, c->d_ff);
		plan(pl, &ba->gelu, R, c->d_ff);
		plan(pl, dropout ? &ba->ffn_mask : NULL, R, D);
		plan(pl, &ba->h_out, R, D);
	}
	plan(pl, &a->lnf, R, D);
	plan(pl, &a->lnf_mean, R, 1);
	plan(pl, &a->lnf_rstd, R, 1);
	plan(pl, &a->pred, B, HQ);
}

/* Plan the backward scratch of B windows. */
static void
plan_grad_acts(Planner *pl, TstModel *model, GradActs *g, int64_t B)
{
	const TstConfig *c = &model->config;
	int64_t		R = B * model->n_patches;
	int64_t		D = c->d_model;

	if (pl->base != NULL)
		memset(g, 0, sizeof(*g));
	plan(pl, &g->dh, R, D);
	plan(pl, &g->dtmp, R, D);
	plan(pl, &g->dln, R, D);
	plan(pl, &g->datty, R, D);
	plan(pl, &g->dqkv, R, 3 * D);
	plan(pl, &g->dfc1, R, c->d_ff);
	plan(pl, &g->dgelu, R, c->d_ff);
	plan(pl, &g->dpred, B, (int64_t) c->horizon * c->n_quantiles);
}

/* Floats needed by the activations of one window, with alignment padding. */
static int64_t
activation_floats_per_window(TstModel *model)
{
	Planner		pl = {NULL, 0, false};
	Activations scratch;

	plan_activations(&pl, model, &scratch, 1);
	return pl.used;
}

/* Make the activations hold at least batch windows. */
static TstStatus
ensure_activations(TstModel *model, int32_t batch, char *errmsg)
{
	Planner		pl = {NULL, 0, false};
	float	   *memory;

	if (batch <= model->acts_capacity)
		return TST_OK;

	plan_activations(&pl, model, &model->acts, batch);
	if (pl.overflow || (uint64_t) pl.used > TST_MAX_ALLOC_BYTES / sizeof(float))
	{
		tst_set_error(errmsg, "activations for a batch of %d windows exceed the 1 GiB allocation limit",
					  (int) batch);
		return TST_ERR_TOO_LARGE;
	}

	tst_release(&model->allocator, model->acts_memory);
	model->acts_memory = NULL;
	model->acts_capacity = 0;
	model->last_batch = 0;
	model->last_has_loss = false;

	memory = model_alloc(model, (size_t) pl.used * sizeof(float));
	if (memory == NULL)
	{
		tst_set_error(errmsg, "out of memory for activations of a batch of %d windows", (int) batch);
		return TST_ERR_NOMEM;
	}
	pl.base = memory;
	pl.used = 0;
	plan_activations(&pl, model, &model->acts, batch);
	model->acts_memory = memory;
	model->acts_capacity = batch;
	return TST_OK;
}

/* Make the backward scratch hold at least batch windows. */
static TstStatus
ensure_grad_acts(TstModel *model, int32_t batch, char *errmsg)
{
	Planner		pl = {NULL, 0, false};
	float	   *memory;

	if (batch <= model->grad_acts_capacity)
		return TST_OK;

	plan_grad_acts(&pl, model, &model->grad_acts, batch);
	if (pl.overflow || (uint64_t) pl.used > TST_MAX_ALLOC_BYTES / sizeof(float))
	{
		tst_set_error(errmsg, "gradient scratch for a batch of %d windows exceeds the 1 GiB allocation limit",
					  (int) batch);
		return TST_ERR_TOO_LARGE;
	}

	tst_release(&model->allocator, model->grad_acts_memory);
	model->grad_acts_memory = NULL;
	model->grad_acts_capacity = 0;

	memory = model_alloc(model, (size_t) pl.used * sizeof(float));
	if (memory == NULL)
	{
		tst_set_error(errmsg, "out of memory for gradient scratch of a batch of %d windows", (int) batch);
		return TST_ERR_NOMEM;
	}
	pl.base = memory;
	pl.used = 0;
	plan_grad_acts(&pl, model, &model->grad_acts, batch);
	model->grad_acts_memory = memory;
	model->grad_acts_capacity = batch;
	return TST_OK;
}

TstStatus
tst_model_enable_grad(TstModel *model, char *errmsg)
{
	if (model->grads != NULL)
		return TST_OK;
	model->grads = model_alloc(model, (size_t) model->n_params * sizeof(float));
	if (model->grads == NULL)
	{
		tst_set_error(errmsg, "out of memory for gradients of %lld parameters",
					  (long long) model->n_params);
		return TST_ERR_NOMEM;
	}
	memset(model->grads, 0, (size_t) model->n_params * sizeof(float));
	carve_params(model, model->grads, true);
	return TST_OK;
}

void
tst_model_zero_grad(TstModel *model)
{
	if (model->grads != NULL)
		memset(model->grads, 0, (size_t) model->n_params * sizeof(float));
}

/*
 * Forward and backward
 */

/* Apply dropout in place when enabled; otherwise leave x unchanged. */
static void
apply_dropout(float *x, float *mask, size_t n, bool enabled, float p, TstRng *rng)
{
	if (enabled)
		dropout_forward(x, mask, x, p, n, rng);
}

/*
 * Run the network on acts.inputs (B, L), writing acts.pred (B, H*Q).
 * With dropout true, draws the masks from rng.
 */
static void
forward_pass(TstModel *model, int32_t B, bool dropout, TstRng *rng)
{
	const TstConfig *c = &model->config;
	Activations *a = &model->acts;
	int			N = model->n_patches;
	int			D = c->d_model;
	int			F = c->d_ff;
	int			R = B * N;
	int			HQ = c->horizon * c->n_quantiles;
	float		p = c->dropout;
	size_t		RD = (size_t) R * D;
	const float *h = a->h0;

	patches_forward(a->patches, a->inputs, B, c->context, N, c->patch_len, c->patch_stride);
	linear_forward(a->h0, a->patches, PARAM(model, T_PATCH_W), PARAM(model, T_PATCH_B),
				   R, c->patch_len, D);
	position_forward(a->h0, PARAM(model, T_POS), B, N, D);
	apply_dropout(a->h0, a->embed_mask, RD, dropout, p, rng);

	for (int32_t l = 0; l < c->n_layers; l++)
	{
		BlockActs  *ba = &a->blocks[l];

		layernorm_forward(ba->ln1, ba->ln1_mean, ba->ln1_rstd, h,
						  PARAM(model, block_tensor(l, B_LN1_W)),
						  PARAM(model, block_tensor(l, B_LN1_B)), R, D);
		linear_forward(ba->qkv, ba->ln1, PARAM(model, block_tensor(l, B_QKV_W)),
					   PARAM(model, block_tensor(l, B_QKV_B)), R, D, 3 * D);
		attention_forward(ba->atty, ba->probs, ba->qkv, &model->pattern, B, N, D, c->n_heads);
		linear_forward(a->proj, ba->atty, PARAM(model, block_tensor(l, B_OUT_W)),
					   PARAM(model, block_tensor(l, B_OUT_B)), R, D, D);
		apply_dropout(a->proj, ba->attn_mask, RD, dropout, p, rng);
		residual_forward(ba->h_mid, h, a->proj, RD);

		layernorm_forward(ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->h_mid,
						  PARAM(model, block_tensor(l, B_LN2_W)),
						  PARAM(model, block_tensor(l, B_LN2_B)), R, D);
		linear_forward(ba->fc1, ba->ln2, PARAM(model, block_tensor(l, B_FC1_W)),
					   PARAM(model, block_tensor(l, B_FC1_B)), R, D, F);
		gelu_forward(ba->gelu, ba->fc1, (size_t) R * F);
		linear_forward(a->proj, ba->gelu, PARAM(model, block_tensor(l, B_FC2_W)),
					   PARAM(model, block_tensor(l, B_FC2_B)), R, F, D);
		apply_dropout(a->proj, ba->ffn_mask, RD, dropout, p, rng);
		residual_forward(ba->h_out, ba->h_mid, a->proj, RD);
		h = ba->h_out;
	}

	layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, h,
					  PARAM(model, final_tensor(model, F_LNF_W)),
					  PARAM(model, final_tensor(model, F_LNF_B)), R, D);
	linear_forward(a->pred, a->lnf, PARAM(model, final_tensor(model, F_HEAD_W)),
				   PARAM(model, final_tensor(model, F_HEAD_B)), B, N * D, HQ);

}

/* Return the index of the first non-finite value of x (n), or -1. */
static int64_t
find_non_finite(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return i;
	return -1;
}

TstStatus
tst_model_forward(TstModel *model, const float *xn, const float *yn,
				  int32_t batch, bool training, TstRng *rng,
				  float *pred, float *loss, char *errmsg)
{
	const TstConfig *c;
	bool		dropout;
	int64_t		bad;
	TstStatus	status;
	Activations *a;

	if (model == NULL || xn == NULL)
	{
		tst_set_error(errmsg, "model or input windows are missing");
		return TST_ERR_ARGUMENT;
	}
	c = &model->config;
	if (batch < 1)
	{
		tst_set_error(errmsg, "batch size %d is not positive", (int) batch);
		return TST_ERR_ARGUMENT;
	}
	dropout = training && c->dropout > 0.0f;
	if (dropout && rng == NULL)
	{
		tst_set_error(errmsg, "training with dropout needs a random number generator");
		return TST_ERR_ARGUMENT;
	}
	bad = find_non_finite(xn, (int64_t) batch * c->context);
	if (bad >= 0)
	{
		tst_set_error(errmsg, "input window %lld contains a non-finite value",
					  (long long) (bad / c->context));
		return TST_ERR_NUMERIC;
	}
	if (yn != NULL && (bad = find_non_finite(yn, (int64_t) batch * c->horizon)) >= 0)
	{
		tst_set_error(errmsg, "target window %lld contains a non-finite value",
					  (long long) (bad / c->horizon));
		return TST_ERR_NUMERIC;
	}

	status = ensure_activations(model, batch, errmsg);
	if (status != TST_OK)
		return status;
	a = &model->acts;

	memcpy(a->inputs, xn, (size_t) batch * c->context * sizeof(float));
	forward_pass(model, batch, dropout, rng);

	model->last_batch = batch;
	model->last_dropout = dropout;
	model->last_has_loss = yn != NULL;
	if (yn != NULL)
	{
		memcpy(a->targets, yn, (size_t) batch * c->horizon * sizeof(float));
		if (loss != NULL)
			pinball_forward(loss, a->pred, a->targets, c->quantiles,
							batch, c->horizon, c->n_quantiles);
	}
	else if (loss != NULL)
		*loss = 0.0f;
	if (pred != NULL)
		memcpy(pred, a->pred, (size_t) batch * c->horizon * c->n_quantiles * sizeof(float));
	return TST_OK;
}

static void
zero_floats(float *x, size_t n)
{
	memset(x, 0, n * sizeof(float));
}

/* dinp = dout * mask when dropout ran, else dinp = dout. */
static void
dropout_grad(float *dinp, const float *dout, const float *mask, size_t n, bool enabled)
{
	if (enabled)
	{
		zero_floats(dinp, n);
		dropout_backward(dinp, dout, mask, n);
	}
	else
		memcpy(dinp, dout, n * sizeof(float));
}

/*
 * Backpropagate the loss of the last forward pass, mirroring forward_pass.
 * The residual stream gradient g->dh passes through each residual add
 * unchanged, and each layer norm backward adds its input gradient into it.
 */
static void
backward_pass(TstModel *model)
{
	const TstConfig *c = &model->config;
	Activations *a = &model->acts;
	GradActs   *g = &model->grad_acts;
	int			B = model->last_batch;
	int			N = model->n_patches;
	int			D = c->d_model;
	int			F = c->d_ff;
	int			R = B * N;
	int			HQ = c->horizon * c->n_quantiles;
	size_t		RD = (size_t) R * D;
	size_t		RF = (size_t) R * F;
	bool		dropout = model->last_dropout;

	zero_floats(g->dpred, (size_t) B * HQ);
	pinball_backward(g->dpred, a->pred, a->targets, c->quantiles, B, c->horizon, c->n_quantiles);
	zero_floats(g->dln, RD);
	linear_backward(g->dln, GRAD(model, final_tensor(model, F_HEAD_W)),
					GRAD(model, final_tensor(model, F_HEAD_B)), g->dpred, a->lnf,
					PARAM(model, final_tensor(model, F_HEAD_W)), B, N * D, HQ);
	zero_floats(g->dh, RD);
	layernorm_backward(g->dh, GRAD(model, final_tensor(model, F_LNF_W)),
					   GRAD(model, final_tensor(model, F_LNF_B)), g->dln,
					   c->n_layers > 0 ? a->blocks[c->n_layers - 1].h_out : a->h0,
					   PARAM(model, final_tensor(model, F_LNF_W)), a->lnf_mean, a->lnf_rstd, R, D);

	for (int32_t l = c->n_layers - 1; l >= 0; l--)
	{
		BlockActs  *ba = &a->blocks[l];
		const float *h_in = l > 0 ? a->blocks[l - 1].h_out : a->h0;

		/* h_out = h_mid + dropout(fc2(gelu(fc1(ln2(h_mid))))) */
		dropout_grad(g->dtmp, g->dh, ba->ffn_mask, RD, dropout);
		zero_floats(g->dgelu, RF);
		linear_backward(g->dgelu, GRAD(model, block_tensor(l, B_FC2_W)),
						GRAD(model, block_tensor(l, B_FC2_B)), g->dtmp, ba->gelu,
						PARAM(model, block_tensor(l, B_FC2_W)), R, F, D);
		zero_floats(g->dfc1, RF);
		gelu_backward(g->dfc1, ba->fc1, g->dgelu, RF);
		zero_floats(g->dln, RD);
		linear_backward(g->dln, GRAD(model, block_tensor(l, B_FC1_W)),
						GRAD(model, block_tensor(l, B_FC1_B)), g->dfc1, ba->ln2,
						PARAM(model, block_tensor(l, B_FC1_W)), R, D, F);
		layernorm_backward(g->dh, GRAD(model, block_tensor(l, B_LN2_W)),
						   GRAD(model, block_tensor(l, B_LN2_B)), g->dln, ba->h_mid,
						   PARAM(model, block_tensor(l, B_LN2_W)), ba->ln2_mean, ba->ln2_rstd, R, D);

		/* h_mid = h_in + dropout(out(attention(qkv(ln1(h_in))))) */
		dropout_grad(g->dtmp, g->dh, ba->attn_mask, RD, dropout);
		zero_floats(g->datty, RD);
		linear_backward(g->datty, GRAD(model, block_tensor(l, B_OUT_W)),
						GRAD(model, block_tensor(l, B_OUT_B)), g->dtmp, ba->atty,
						PARAM(model, block_tensor(l, B_OUT_W)), R, D, D);
		zero_floats(g->dqkv, RD * 3);
		attention_backward(g->dqkv, g->datty, ba->qkv, ba->probs, &model->pattern,
						   B, N, D, c->n_heads);
		zero_floats(g->dln, RD);
		linear_backward(g->dln, GRAD(model, block_tensor(l, B_QKV_W)),
						GRAD(model, block_tensor(l, B_QKV_B)), g->dqkv, ba->ln1,
						PARAM(model, block_tensor(l, B_QKV_W)), R, D, 3 * D);
		layernorm_backward(g->dh, GRAD(model, block_tensor(l, B_LN1_W)),
						   GRAD(model, block_tensor(l, B_LN1_B)), g->dln, h_in,
						   PARAM(model, block_tensor(l, B_LN1_W)), ba->ln1_mean, ba->ln1_rstd, R, D);
	}

	/* h0 = dropout(patch(patches) + pos); the inputs need no gradient. */
	dropout_grad(g->dtmp, g->dh, a->embed_mask, RD, dropout);
	position_backward(GRAD(model, T_POS), g->dtmp, B, N, D);
	linear_backward(NULL, GRAD(model, T_PATCH_W), GRAD(model, T_PATCH_B), g->dtmp,
					a->patches, PARAM(model, T_PATCH_W), R, c->patch_len, D);
}

TstStatus
tst_model_backward(TstModel *model, char *errmsg)
{
	TstStatus	status;

	if (model == NULL)
	{
		tst_set_error(errmsg, "model is missing");
		return TST_ERR_ARGUMENT;
	}
	if (model->grads == NULL)
	{
		tst_set_error(errmsg, "gradient buffers are not allocated");
		return TST_ERR_ARGUMENT;
	}
	if (model->last_batch < 1 || !model->last_has_loss)
	{
		tst_set_error(errmsg, "no forward pass with targets to differentiate");
		return TST_ERR_ARGUMENT;
	}
	status = ensure_grad_acts(model, model->last_batch, errmsg);
	if (status != TST_OK)
		return status;
	backward_pass(model);
	return TST_OK;
}

/*
 * Normalization and forecasting
 */

void
tst_normalize_window(const double *x, int32_t length, float *xn,
					 double *mean_out, double *scale_out)
{
	double		sum = 0.0;
	double		squares = 0.0;
	double		mean;
	double		sd;
	double		scale;

	for (int32_t t = 0; t < length; t++)
		sum += x[t];
	mean = sum / length;
	for (int32_t t = 0; t < length; t++)
	{
		double		d = x[t] - mean;

		squares += d * d;
	}
	sd = sqrt(squares / length);

	/* A constant window (relative to its level) maps to zeros. */
	scale = sd > 0.0 && sd > 1e-10 * fabs(mean) ? sd : 1.0;
	for (int32_t t = 0; t < length; t++)
		xn[t] = (float) ((x[t] - mean) / scale);
	*mean_out = mean;
	*scale_out = scale;
}

/* Sort n doubles ascending; n is at most TST_MAX_QUANTILES. */
static void
sort_small(double *v, int n)
{
	for (int i = 1; i < n; i++)
	{
		double		key = v[i];
		int			j = i - 1;

		while (j >= 0 && v[j] > key)
		{
			v[j + 1] = v[j];
			j--;
		}
		v[j + 1] = key;
	}
}

/* Normalize windows x (B, L) into the activations; false on a non-finite value. */
static bool
normalize_batch(TstModel *model, const double *x, int32_t B, int64_t first, char *errmsg)
{
	int32_t		L = model->config.context;
	Activations *a = &model->acts;

	for (int32_t b = 0; b < B; b++)
	{
		const double *w = x + (size_t) b * L;
		float	   *xn = a->inputs + (size_t) b * L;

		for (int32_t t = 0; t < L; t++)
		{
			if (!isfinite(w[t]))
			{
				tst_set_error(errmsg, "window %lld contains a non-finite value at step %d",
							  (long long) (first + b), (int) t);
				return false;
			}
		}
		tst_normalize_window(w, L, xn, &a->means[b], &a->scales[b]);
		if (!isfinite(a->means[b]) || !isfinite(a->scales[b]) ||
			find_non_finite(xn, L) >= 0)
		{
			tst_set_error(errmsg, "window %lld has values too large to normalize",
						  (long long) (first + b));
			return false;
		}
	}
	return true;
}

TstStatus
tst_model_forecast(TstModel *model, const double *x, int32_t batch,
				   double *out, char *errmsg)
{
	const TstConfig *c;
	int32_t		H;
	int32_t		Q;
	int64_t		per_window;
	int64_t		fit;
	int32_t		chunk;
	TstStatus	status;

	if (model == NULL || x == NULL || out == NULL)
	{
		tst_set_error(errmsg, "model, input or output is missing");
		return TST_ERR_ARGUMENT;
	}
	if (batch < 1)
	{
		tst_set_error(errmsg, "batch size %d is not positive", (int) batch);
		return TST_ERR_ARGUMENT;
	}
	c = &model->config;
	H = c->horizon;
	Q = c->n_quantiles;

	/* Reuse any existing capacity; otherwise run chunks of bounded size. */
	per_window = activation_floats_per_window(model);
	fit = FORECAST_BUDGET / ((int64_t) sizeof(float) * per_window);
	chunk = (int32_t) (fit < FORECAST_MIN_CHUNK ? FORECAST_MIN_CHUNK :
					   fit > FORECAST_CHUNK ? FORECAST_CHUNK : fit);
	if (model->acts_capacity > chunk)
		chunk = model->acts_capacity;
	fit = (int64_t) (TST_MAX_ALLOC_BYTES / sizeof(float)) / per_window;
	if (chunk > fit)
		chunk = (int32_t) (fit > 0 ? fit : 1);
	if (chunk > batch)
		chunk = batch;
	status = ensure_activations(model, chunk, errmsg);
	if (status != TST_OK)
		return status;

	/* The activations no longer belong to a training forward pass. */
	model->last_batch = 0;
	model->last_has_loss = false;

	for (int64_t first = 0; first < batch; first += chunk)
	{
		int32_t		B = (int32_t) (batch - first < chunk ? batch - first : chunk);
		Activations *a = &model->acts;

		if (!normalize_batch(model, x + first * c->context, B, first, errmsg))
			return TST_ERR_NUMERIC;
		forward_pass(model, B, false, NULL);
		{
			/* Finite weights can still overflow, e.g. a hand-edited blob. */
			int64_t		bad = find_non_finite(a->pred, (int64_t) B * H * Q);

			if (bad >= 0)
			{
				tst_set_error(errmsg, "model output for window %lld is not finite",
							  (long long) (first + bad / ((int64_t) H * Q)));
				return TST_ERR_NUMERIC;
			}
		}

		/*
		 * Sort each step's quantiles, add the calibration offsets, sort again
		 * (a negative offset may cross two levels), then de-normalize. The
		 * scale is positive, so de-normalizing keeps the order.
		 */
		for (int32_t b = 0; b < B; b++)
		{
			for (int32_t h = 0; h < H; h++)
			{
				const float *y = a->pred + ((size_t) b * H + h) * Q;
				const float *cal = model->calibration + (size_t) h * Q;
				double	   *o = out + (((size_t) first + b) * H + h) * Q;

				for (int32_t q = 0; q < Q; q++)
					o[q] = (double) y[q];
				sort_small(o, Q);
				for (int32_t q = 0; q < Q; q++)
					o[q] += (double) cal[q];
				sort_small(o, Q);
				for (int32_t q = 0; q < Q; q++)
					o[q] = o[q] * a->scales[b] + a->means[b];
			}
		}
	}
	return TST_OK;
}
