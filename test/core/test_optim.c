/*
 * test_optim.c
 *		Tests of the AdamW step: hand-computed updates, weight decay only on
 *		2-D weights other than pos, global-norm clipping, and rejection of
 *		non-finite gradients without touching the parameters.
 */
#include "harness.h"
#include "tst_core.h"

#include <stdlib.h>
#include <string.h>

/* A small model; the tests overwrite its parameters and gradients. */
static TstModel *
make_model(void)
{
	TstConfig	config;
	TstModel   *model = NULL;
	char		errmsg[TST_ERRMSG_LEN] = "";

	tst_config_default(&config);
	config.context = 8;
	config.horizon = 2;
	config.patch_len = 4;
	config.patch_stride = 2;
	config.d_model = 4;
	config.n_heads = 2;
	config.n_layers = 1;
	config.d_ff = 6;
	config.window = 2;
	config.n_quantiles = 1;
	config.quantiles[0] = 0.5f;
	if (tst_model_create(&config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
	{
		printf("    model creation failed: %s\n", errmsg);
		return NULL;
	}
	tst_model_init(model, 7);
	if (tst_model_enable_grad(model, errmsg) != TST_OK)
	{
		printf("    enabling gradients failed: %s\n", errmsg);
		tst_model_free(model);
		return NULL;
	}
	return model;
}

static TstTensor *
find_tensor(TstModel *model, const char *name)
{
	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		if (strcmp(tensor->name, name) == 0)
			return tensor;
	}
	printf("    tensor %s not found\n", name);
	return NULL;
}

/* Set every parameter to value and every gradient to 0. */
static void
fill_parameters(TstModel *model, float value)
{
	tst_model_zero_grad(model);
	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		for (int64_t i = 0; i < tensor->size; i++)
			tensor->data[i] = value;
	}
}

static TstAdamW
default_hparams(float learning_rate, float weight_decay)
{
	TstAdamW	hparams;

	hparams.learning_rate = learning_rate;
	hparams.beta1 = 0.9f;
	hparams.beta2 = 0.999f;
	hparams.eps = 1e-8f;
	hparams.weight_decay = weight_decay;
	return hparams;
}

/* Copy all parameters into one malloc'd array, in tensor order. */
static float *
copy_parameters(TstModel *model)
{
	float	   *copy = malloc((size_t) tst_model_num_params(model) * sizeof(float));
	int64_t		offset = 0;

	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		memcpy(copy + offset, tensor->data, (size_t) tensor->size * sizeof(float));
		offset += tensor->size;
	}
	return copy;
}

static bool
parameters_equal(TstModel *model, const float *copy)
{
	int64_t		offset = 0;

	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		if (memcmp(copy + offset, tensor->data, (size_t) tensor->size * sizeof(float)) != 0)
			return false;
		offset += tensor->size;
	}
	return true;
}

/*
 * First step from p = 0.5 with g = 0.2: m_hat = g and v_hat = g^2, so the
 * Adam term is g / (|g| + eps), and decay adds wd * p on decayed tensors.
 */
TEST(first_step_matches_hand_update)
{
	TstModel   *model = make_model();
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = default_hparams(0.1f, 0.01f);
	char		errmsg[TST_ERRMSG_LEN] = "";
	float		norm = 0.0f;
	double		adam = 0.2 / (0.2 + 1e-8);

	CHECK(model != NULL);
	if (model == NULL)
		return;
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);

	fill_parameters(model, 0.5f);
	find_tensor(model, "patch.weight")->grad[0] = 0.2f;
	find_tensor(model, "patch.bias")->grad[0] = 0.2f;
	find_tensor(model, "pos")->grad[0] = 0.2f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 0.0f, &norm, errmsg) == TST_OK);
	CHECK_CLOSE(norm, sqrt(3 * 0.2 * 0.2), 1e-6);

	/* 2-D weight: Adam term plus decay; a zero gradient leaves only decay. */
	CHECK_CLOSE(find_tensor(model, "patch.weight")->data[0], 0.5 - 0.1 * (adam + 0.01 * 0.5), 1e-6);
	CHECK_CLOSE(find_tensor(model, "patch.weight")->data[1], 0.5 - 0.1 * 0.01 * 0.5, 1e-7);
	CHECK_CLOSE(find_tensor(model, "head.weight")->data[0], 0.4995, 1e-7);
	CHECK_CLOSE(find_tensor(model, "blocks.0.attn.qkv.weight")->data[3], 0.4995, 1e-7);

	/* 1-D tensors and pos: no decay. */
	CHECK_CLOSE(find_tensor(model, "patch.bias")->data[0], 0.5 - 0.1 * adam, 1e-6);
	CHECK(find_tensor(model, "patch.bias")->data[1] == 0.5f);
	CHECK_CLOSE(find_tensor(model, "pos")->data[0], 0.5 - 0.1 * adam, 1e-6);
	CHECK(find_tensor(model, "pos")->data[1] == 0.5f);
	CHECK(find_tensor(model, "blocks.0.ln1.weight")->data[0] == 0.5f);
	CHECK(find_tensor(model, "head.bias")->data[0] == 0.5f);

	tst_optimizer_free(optimizer);
	tst_model_free(model);
}

/* Without decay, p - lr * g / (|g| + eps) on a 2-D weight. */
TEST(first_step_without_decay)
{
	TstModel   *model = make_model();
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = default_hparams(0.05f, 0.0f);
	char		errmsg[TST_ERRMSG_LEN] = "";

	CHECK(model != NULL);
	if (model == NULL)
		return;
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);

	fill_parameters(model, 0.5f);
	find_tensor(model, "patch.weight")->grad[0] = -0.3f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 0.0f, NULL, errmsg) == TST_OK);
	CHECK_CLOSE(find_tensor(model, "patch.weight")->data[0], 0.5 + 0.05 * 0.3 / (0.3 + 1e-8), 1e-6);
	CHECK(find_tensor(model, "patch.weight")->data[1] == 0.5f);
	CHECK(find_tensor(model, "head.weight")->data[0] == 0.5f);

	tst_optimizer_free(optimizer);
	tst_model_free(model);
}

/* Two steps with bias correction, computed from the AdamW recurrence. */
TEST(second_step_uses_moments)
{
	TstModel   *model = make_model();
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = default_hparams(0.1f, 0.0f);
	char		errmsg[TST_ERRMSG_LEN] = "";
	double		g1 = 0.2;
	double		g2 = -0.1;
	double		m;
	double		v;
	double		p;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);

	fill_parameters(model, 0.5f);
	find_tensor(model, "patch.bias")->grad[0] = (float) g1;
	CHECK(tst_optimizer_step(optimizer, &hparams, 0.0f, NULL, errmsg) == TST_OK);
	find_tensor(model, "patch.bias")->grad[0] = (float) g2;
	CHECK(tst_optimizer_step(optimizer, &hparams, 0.0f, NULL, errmsg) == TST_OK);

	m = 0.1 * g1;
	v = 0.001 * g1 * g1;
	p = 0.5 - 0.1 * (m / 0.1) / (sqrt(v / 0.001) + 1e-8);
	m = 0.9 * m + 0.1 * g2;
	v = 0.999 * v + 0.001 * g2 * g2;
	p -= 0.1 * (m / (1 - 0.9 * 0.9)) / (sqrt(v / (1 - 0.999 * 0.999)) + 1e-8);
	CHECK_CLOSE(find_tensor(model, "patch.bias")->data[0], p, 1e-5);

	tst_optimizer_free(optimizer);
	tst_model_free(model);
}

/*
 * With eps = 1 the first step is lr * g / (|g| + 1), which shows the scale
 * of the gradient: gradients (3, 4) have norm 5 and clip to (0.6, 0.8).
 */
TEST(clipping_scales_global_norm)
{
	TstModel   *model = make_model();
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = default_hparams(1.0f, 0.0f);
	char		errmsg[TST_ERRMSG_LEN] = "";
	float		max_norms[3] = {1.0f, 0.0f, 10.0f};
	double		expected[3][2] = {
		{0.5 - 0.6 / 1.6, 0.5 - 0.8 / 1.8},	/* clipped to norm 1 */
		{0.5 - 3.0 / 4.0, 0.5 - 4.0 / 5.0},	/* max_norm 0: no clipping */
		{0.5 - 3.0 / 4.0, 0.5 - 4.0 / 5.0},	/* norm below max_norm */
	};

	CHECK(model != NULL);
	if (model == NULL)
		return;
	hparams.eps = 1.0f;

	for (int c = 0; c < 3; c++)
	{
		TstTensor  *bias;
		float		norm = 0.0f;

		CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);
		fill_parameters(model, 0.5f);
		bias = find_tensor(model, "patch.bias");
		bias->grad[0] = 3.0f;
		bias->grad[1] = 4.0f;

		CHECK(tst_optimizer_step(optimizer, &hparams, max_norms[c], &norm, errmsg) == TST_OK);
		CHECK_CLOSE(norm, 5.0, 1e-7);
		CHECK_CLOSE(bias->data[0], expected[c][0], 1e-6);
		CHECK_CLOSE(bias->data[1], expected[c][1], 1e-6);
		/* Clipping scales as it reads and leaves the gradients as they were. */
		CHECK(bias->grad[0] == 3.0f);
		CHECK(bias->grad[1] == 4.0f);
		tst_optimizer_free(optimizer);
	}
	tst_model_free(model);
}

/*
 * A NaN or infinite gradient is rejected before anything changes: the next
 * valid step gives exactly what a fresh optimizer's first step gives.
 */
TEST(nonfinite_gradient_rejected)
{
	TstModel   *model = make_model();
	TstModel   *reference = make_model();
	TstOptimizer *optimizer = NULL;
	TstOptimizer *fresh = NULL;
	TstAdamW	hparams = default_hparams(0.01f, 0.01f);
	char		errmsg[TST_ERRMSG_LEN] = "";
	float		bad_values[2] = {NAN, INFINITY};
	float	   *before;
	float		norm = 0.0f;

	CHECK(model != NULL);
	CHECK(reference != NULL);
	if (model == NULL || reference == NULL)
		return;
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);
	CHECK(tst_optimizer_create(reference, &tst_malloc_allocator, &fresh, errmsg) == TST_OK);
	before = copy_parameters(model);

	for (int c = 0; c < 2; c++)
	{
		tst_model_zero_grad(model);
		find_tensor(model, "patch.weight")->grad[0] = 0.1f;
		find_tensor(model, "blocks.0.ffn.fc1.weight")->grad[2] = bad_values[c];
		errmsg[0] = '\0';
		CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, &norm, errmsg) == TST_ERR_NUMERIC);
		CHECK(strstr(errmsg, "blocks.0.ffn.fc1.weight") != NULL);
		CHECK(isnan(norm));
		CHECK(parameters_equal(model, before));
	}

	/* Same gradient on both models; the rejected steps must have left no trace. */
	tst_model_zero_grad(model);
	tst_model_zero_grad(reference);
	find_tensor(model, "patch.weight")->grad[0] = 0.1f;
	find_tensor(reference, "patch.weight")->grad[0] = 0.1f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_OK);
	CHECK(tst_optimizer_step(fresh, &hparams, 1.0f, NULL, errmsg) == TST_OK);
	free(before);
	before = copy_parameters(reference);
	CHECK(parameters_equal(model, before));

	free(before);
	tst_optimizer_free(optimizer);
	tst_optimizer_free(fresh);
	tst_model_free(model);
	tst_model_free(reference);
}

/* Hyperparameters outside their ranges are argument errors. */
TEST(invalid_hparams_rejected)
{
	TstModel   *model = make_model();
	TstOptimizer *optimizer = NULL;
	char		errmsg[TST_ERRMSG_LEN] = "";
	TstAdamW	hparams;
	float	   *before;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);
	before = copy_parameters(model);

	hparams = default_hparams(NAN, 0.0f);
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(-0.1f, 0.0f);
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(0.1f, 0.0f);
	hparams.beta1 = 1.0f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(0.1f, 0.0f);
	hparams.beta2 = -0.5f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(0.1f, 0.0f);
	hparams.eps = 0.0f;
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(0.1f, INFINITY);
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	hparams = default_hparams(0.1f, 0.0f);
	CHECK(tst_optimizer_step(optimizer, &hparams, NAN, NULL, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_optimizer_step(optimizer, NULL, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	CHECK(parameters_equal(model, before));

	free(before);
	tst_optimizer_free(optimizer);
	tst_model_free(model);
}

/* A step before tst_model_enable_grad has no gradients to read. */
TEST(step_without_gradients_rejected)
{
	TstConfig	config;
	TstModel   *model = NULL;
	TstOptimizer *optimizer = NULL;
	TstAdamW	hparams = default_hparams(0.1f, 0.0f);
	char		errmsg[TST_ERRMSG_LEN] = "";

	tst_config_default(&config);
	CHECK(tst_model_create(&config, &tst_malloc_allocator, &model, errmsg) == TST_OK);
	if (model == NULL)
		return;
	tst_model_init(model, 1);
	CHECK(tst_optimizer_create(model, &tst_malloc_allocator, &optimizer, errmsg) == TST_OK);
	CHECK(tst_optimizer_step(optimizer, &hparams, 1.0f, NULL, errmsg) == TST_ERR_ARGUMENT);
	CHECK(strstr(errmsg, "not allocated") != NULL);

	tst_optimizer_free(optimizer);
	tst_model_free(model);
}

int
main(void)
{
	RUN(first_step_matches_hand_update);
	RUN(first_step_without_decay);
	RUN(second_step_uses_moments);
	RUN(clipping_scales_global_norm);
	RUN(nonfinite_gradient_rejected);
	RUN(invalid_hparams_rejected);
	RUN(step_without_gradients_rejected);
	return test_summary();
}
