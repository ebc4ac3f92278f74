/*
 * test_model.c
 *		Whole-model tests: tensor table, initialization, normalization,
 *		finite-difference gradients, forecasting, memory reuse and errors.
 *
 * The model gradient check perturbs every parameter of a tiny model by
 * +-FD_STEP and recomputes the mean pinball loss in double from the float
 * predictions. The loss has kinks where a prediction equals its target, so a
 * parameter is skipped when its perturbation moves any prediction across its
 * target. The check fails when more than a sixth of them are skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels.h"

/*
 * With D as small as 3, layer norms curve sharply, so a step of 1e-2 shows
 * truncation errors of several percent; 1e-3 keeps them under 2%, and float
 * rounding in the loss stays below the 1e-4 absolute floor.
 */
#define FD_STEP 1e-3f
#define MODEL_GRAD_TOL 2e-2
#define MODEL_GRAD_FLOOR 1e-4

/* A configuration small enough to check every parameter. */
static TstConfig
tiny_config(TstAttentionKind kind)
{
	TstConfig	c;

	tst_config_default(&c);
	c.context = 12;
	c.horizon = 2;
	c.patch_len = 4;
	c.patch_stride = 2;
	c.d_model = 4;
	c.n_heads = 2;
	c.n_layers = 2;
	c.d_ff = 6;
	c.dropout = 0.0f;
	c.attention = kind;
	c.window = 2;
	c.n_quantiles = 3;
	c.quantiles[0] = 0.1f;
	c.quantiles[1] = 0.5f;
	c.quantiles[2] = 0.9f;
	return c;
}

static TstModel *
create_model(const TstConfig *config, uint64_t seed)
{
	TstModel   *model = NULL;
	char		errmsg[TST_ERRMSG_LEN] = "";

	if (tst_model_create(config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
	{
		printf("    model creation failed: %s\n", errmsg);
		return NULL;
	}
	tst_model_init(model, seed);
	return model;
}

/* Standard-normal-looking floats from an rng (sum of uniforms). */
static void
fill_noise(float *x, size_t n, TstRng *rng)
{
	for (size_t i = 0; i < n; i++)
	{
		double		s = 0.0;

		for (int k = 0; k < 4; k++)
			s += tst_rng_uniform(rng);
		x[i] = (float) ((s - 2.0) * 1.7);
	}
}

/*
 * Forward pass of the gradient check: returns the mean pinball loss in
 * double and writes the predictions. The dropout generator restarts from the
 * same seed, so every evaluation draws the same masks.
 */
static double
eval_loss(TstModel *model, const float *xn, const float *yn, int B, float *pred)
{
	const TstConfig *c = tst_model_config(model);
	int			H = c->horizon, Q = c->n_quantiles;
	TstRng		rng;
	float		loss;
	double		acc = 0.0;
	char		errmsg[TST_ERRMSG_LEN];

	tst_rng_seed(&rng, 99);
	if (tst_model_forward(model, xn, yn, B, true, &rng, pred, &loss, errmsg) != TST_OK)
		return NAN;
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
			for (int q = 0; q < Q; q++)
			{
				double		u = (double) yn[b * H + h] - pred[(b * H + h) * Q + q];
				double		tau = c->quantiles[q];

				acc += u > 0 ? tau * u : (tau - 1.0) * u;
			}
	return acc / ((double) B * H * Q);
}

static bool
same_signs(const float *pred, const float *base, const float *yn, int n, int Q)
{
	for (int i = 0; i < n; i++)
		if ((yn[i / Q] - pred[i] > 0) != (yn[i / Q] - base[i] > 0))
			return false;
	return true;
}

/* Compare every parameter gradient with central differences; returns false on failure. */
static bool
check_model_gradients(const TstConfig *config, int B, const char *label)
{
	TstModel   *model = create_model(config, 5);
	TstRng		rng;
	int			L = config->context, H = config->horizon, Q = config->n_quantiles;
	int			n_pred = B * H * Q;
	float	   *xn = malloc(sizeof(float) * B * L);
	float	   *yn = malloc(sizeof(float) * B * H);
	float	   *base = malloc(sizeof(float) * n_pred);
	float	   *pred = malloc(sizeof(float) * n_pred);
	char		errmsg[TST_ERRMSG_LEN];
	int64_t		compared = 0, skipped = 0;
	bool		ok = true;

	if (model == NULL || xn == NULL || yn == NULL || base == NULL || pred == NULL)
		abort();
	tst_rng_seed(&rng, 2024);
	fill_noise(xn, (size_t) B * L, &rng);
	fill_noise(yn, (size_t) B * H, &rng);

	/* Move biases and norm parameters off their initial values too. */
	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		for (int64_t i = 0; i < tensor->size; i++)
			tensor->data[i] += (float) (0.2 * (tst_rng_uniform(&rng) - 0.5));
	}

	if (tst_model_enable_grad(model, errmsg) != TST_OK)
		abort();
	tst_model_zero_grad(model);
	eval_loss(model, xn, yn, B, base);
	if (tst_model_backward(model, errmsg) != TST_OK)
	{
		printf("    backward failed: %s\n", errmsg);
		abort();
	}

	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);
		double		diff = 0.0, norm = 0.0;

		for (int64_t i = 0; i < tensor->size; i++)
		{
			float		saved = tensor->data[i];
			double		plus, minus, numeric;
			bool		crossed;

			tensor->data[i] = saved + FD_STEP;
			plus = eval_loss(model, xn, yn, B, pred);
			crossed = !same_signs(pred, base, yn, n_pred, Q);
			tensor->data[i] = saved - FD_STEP;
			minus = eval_loss(model, xn, yn, B, pred);
			crossed = crossed || !same_signs(pred, base, yn, n_pred, Q);
			numeric = (plus - minus) / (((double) (saved + FD_STEP)) - ((double) (saved - FD_STEP)));
			tensor->data[i] = saved;
			if (crossed)
			{
				skipped++;
				continue;
			}
			compared++;
			diff += (numeric - tensor->grad[i]) * (numeric - tensor->grad[i]);
			norm += (double) tensor->grad[i] * tensor->grad[i];
		}
		/* The absolute floor covers tensors whose gradient is near zero. */
		if (!(sqrt(diff) <= MODEL_GRAD_TOL * sqrt(norm) + MODEL_GRAD_FLOOR))
		{
			printf("    %s: %s gradient error %.3g, norm %.3g\n", label, tensor->name,
				   sqrt(diff), sqrt(norm));
			ok = false;
		}
	}
	if (skipped * 5 > compared)
	{
		printf("    %s: %lld of %lld parameters skipped at kinks\n", label,
			   (long long) skipped, (long long) (skipped + compared));
		ok = false;
	}

	tst_model_free(model);
	free(xn);
	free(yn);
	free(base);
	free(pred);
	return ok;
}

TEST(model_gradients_each_attention)
{
	for (int kind = 0; kind <= TST_ATTENTION_LOGSPARSE; kind++)
	{
		TstConfig	c = tiny_config((TstAttentionKind) kind);

		CHECK(check_model_gradients(&c, 2, tst_attention_name(c.attention)));
	}
}

TEST(model_gradients_without_patching)
{
	for (int kind = 0; kind <= TST_ATTENTION_LOGSPARSE; kind++)
	{
		TstConfig	c = tiny_config((TstAttentionKind) kind);

		/* N = 7 tokens, not a multiple of the window 3. */
		c.context = 7;
		c.patch_len = 1;
		c.patch_stride = 1;
		c.window = 3;
		CHECK(check_model_gradients(&c, 2, tst_attention_name(c.attention)));
	}
}

TEST(model_gradients_odd_sizes)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOGSPARSE);

	/* One head, one layer, H = 1, and (L - P) % S != 0. */
	c.context = 13;
	c.patch_len = 3;
	c.patch_stride = 2;
	c.d_model = 3;
	c.n_heads = 1;
	c.n_layers = 1;
	c.d_ff = 5;
	c.horizon = 1;
	c.window = 2;
	CHECK(check_model_gradients(&c, 3, "odd sizes"));

	c = tiny_config(TST_ATTENTION_LOCAL);
	c.n_quantiles = 1;
	c.quantiles[0] = 0.3f;
	c.n_heads = 4;
	CHECK(check_model_gradients(&c, 1, "one quantile, four heads"));
}

TEST(model_gradients_with_dropout)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOCAL);

	c.dropout = 0.2f;
	CHECK(check_model_gradients(&c, 2, "dropout"));
}

TEST(tensor_table_order_and_shapes)
{
	TstConfig	c;
	TstModel   *model;
	int64_t		D = 64, P = 16, N = 11, F = 128, HQ = 24 * 5, total = 0;
	static const char *const block_names[] = {
		"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias",
		"attn.out.weight", "attn.out.bias", "ln2.weight", "ln2.bias",
		"ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias"};

	tst_config_default(&c);
	model = create_model(&c, 1);
	if (model == NULL)
	{
		CHECK(model != NULL);
		return;
	}
	CHECK(tst_model_num_tensors(model) == 3 + 12 * 2 + 4);
	CHECK(strcmp(tst_model_tensor(model, 0)->name, "patch.weight") == 0);
	CHECK(tst_model_tensor(model, 0)->shape[0] == D);
	CHECK(tst_model_tensor(model, 0)->shape[1] == P);
	CHECK(strcmp(tst_model_tensor(model, 2)->name, "pos") == 0);
	CHECK(tst_model_tensor(model, 2)->shape[0] == N);
	for (int l = 0; l < 2; l++)
		for (int j = 0; j < 12; j++)
		{
			char		name[64];

			snprintf(name, sizeof(name), "blocks.%d.%s", l, block_names[j]);
			CHECK(strcmp(tst_model_tensor(model, 3 + 12 * l + j)->name, name) == 0);
		}
	CHECK(tst_model_tensor(model, 5)->shape[0] == 3 * D);
	CHECK(tst_model_tensor(model, 5)->shape[1] == D);
	CHECK(tst_model_tensor(model, 5)->ndim == 2);
	CHECK(tst_model_tensor(model, 6)->ndim == 1);
	CHECK(strcmp(tst_model_tensor(model, 27)->name, "ln_f.weight") == 0);
	CHECK(strcmp(tst_model_tensor(model, 29)->name, "head.weight") == 0);
	CHECK(tst_model_tensor(model, 29)->shape[0] == HQ);
	CHECK(tst_model_tensor(model, 29)->shape[1] == N * D);
	CHECK(strcmp(tst_model_tensor(model, 30)->name, "head.bias") == 0);
	CHECK(tst_model_tensor(model, 31) == NULL);
	CHECK(tst_model_tensor(model, -1) == NULL);
	for (int32_t t = 0; t < tst_model_num_tensors(model); t++)
	{
		TstTensor  *tensor = tst_model_tensor(model, t);

		CHECK(tensor->grad == NULL);
		CHECK(tensor->size == (int64_t) tensor->shape[0] * (tensor->ndim == 2 ? tensor->shape[1] : 1));
		total += tensor->size;
	}
	CHECK(total == D * P + D + N * D + 2 * (4 * D * D + 2 * D * F + 9 * D + F) + 2 * D + HQ * N * D + HQ);
	CHECK(tst_model_num_params(model) == total);
	tst_model_free(model);
}

TEST(init_follows_the_spec)
{
	TstConfig	c;
	TstModel   *a, *b;
	bool		same = true;

	tst_config_default(&c);
	a = create_model(&c, 42);
	b = create_model(&c, 42);
	if (a == NULL || b == NULL)
	{
		CHECK(!"model creation failed");
		return;
	}
	for (int32_t t = 0; t < tst_model_num_tensors(a); t++)
	{
		TstTensor  *ta = tst_model_tensor(a, t);
		TstTensor  *tb = tst_model_tensor(b, t);
		bool		is_norm = strstr(ta->name, "ln") != NULL;
		bool		is_bias = strstr(ta->name, "bias") != NULL;
		double		bound = strcmp(ta->name, "pos") == 0 ? 0.02 :
			ta->ndim == 2 ? 1.0 / sqrt((double) ta->shape[1]) : 0.0;
		double		max_abs = 0.0;

		if (memcmp(ta->data, tb->data, (size_t) ta->size * sizeof(float)) != 0)
			same = false;
		for (int64_t i = 0; i < ta->size; i++)
		{
			if (is_norm && !is_bias)
				CHECK(ta->data[i] == 1.0f);
			else if (is_bias)
				CHECK(ta->data[i] == 0.0f);
			else
				CHECK(fabs(ta->data[i]) <= bound);
			if (fabs(ta->data[i]) > max_abs)
				max_abs = fabs(ta->data[i]);
		}
		/* Random tensors fill most of their range. */
		if (!is_norm && !is_bias)
			CHECK(max_abs > 0.9 * bound);
	}
	CHECK(same);
	tst_model_init(b, 43);
	CHECK(memcmp(tst_model_tensor(a, 0)->data, tst_model_tensor(b, 0)->data, 16) != 0);
	tst_model_free(a);
	tst_model_free(b);
}

/* Normalization */

TEST(normalize_constant_and_zero_windows)
{
	double		x[5] = {3.5, 3.5, 3.5, 3.5, 3.5};
	double		zeros[4] = {0, 0, 0, 0};
	float		xn[5];
	double		mean, scale;

	tst_normalize_window(x, 5, xn, &mean, &scale);
	CHECK(mean == 3.5);
	CHECK(scale == 1.0);
	for (int i = 0; i < 5; i++)
		CHECK(xn[i] == 0.0f);

	tst_normalize_window(zeros, 4, xn, &mean, &scale);
	CHECK(mean == 0.0);
	CHECK(scale == 1.0);
	for (int i = 0; i < 4; i++)
		CHECK(xn[i] == 0.0f);

	/* A spread below 1e-10 of the level counts as constant. */
	x[0] = 1e12;
	x[1] = 1e12 + 1e-4;
	tst_normalize_window(x, 2, xn, &mean, &scale);
	CHECK(scale == 1.0);
}

TEST(normalize_known_window)
{
	double		x[4] = {1, 2, 3, 4};
	float		xn[4];
	double		mean, scale;

	tst_normalize_window(x, 4, xn, &mean, &scale);
	CHECK_CLOSE(mean, 2.5, 1e-15);
	CHECK_CLOSE(scale, sqrt(1.25), 1e-15);
	CHECK_CLOSE(xn[0], -1.5 / sqrt(1.25), 1e-7);
	CHECK_CLOSE(xn[3], 1.5 / sqrt(1.25), 1e-7);
}

TEST(normalize_large_level_small_spread)
{
	enum
	{
		LEN = 1000
	};
	double		x[LEN];
	float		xn[LEN];
	long double sum = 0.0L, squares = 0.0L, ref_mean, ref_sd;
	double		mean, scale;
	TstRng		rng;

	tst_rng_seed(&rng, 3);
	for (int i = 0; i < LEN; i++)
		x[i] = 1e7 + 0.01 * tst_rng_uniform(&rng);
	for (int i = 0; i < LEN; i++)
		sum += x[i];
	ref_mean = sum / LEN;
	for (int i = 0; i < LEN; i++)
		squares += (x[i] - ref_mean) * (x[i] - ref_mean);
	ref_sd = sqrtl(squares / LEN);

	tst_normalize_window(x, LEN, xn, &mean, &scale);
	CHECK(fabs(mean - (double) ref_mean) <= 1e-15 * 1e7 * 8);
	CHECK_CLOSE(scale / (double) ref_sd, 1.0, 1e-7);
	/* The standard deviation, about 2.9e-3, is above 1e-10 * 1e7, so the window is scaled. */
	CHECK(scale != 1.0);
	for (int i = 0; i < LEN; i++)
		if (fabs(xn[i] - (double) ((x[i] - ref_mean) / ref_sd)) > 1e-5)
		{
			CHECK(!"normalized value differs from the long double result");
			break;
		}
}

/* Forecasting and memory reuse */

static void
random_windows(double *x, int B, int L, TstRng *rng)
{
	for (int b = 0; b < B; b++)
	{
		double		level = 100.0 * (tst_rng_uniform(rng) - 0.5);
		double		spread = 0.1 + 10.0 * tst_rng_uniform(rng);

		for (int t = 0; t < L; t++)
			x[b * L + t] = level + spread * sin(0.3 * t + b) + spread * 0.3 * tst_rng_uniform(rng);
	}
}

TEST(forecast_sorted_and_denormalized)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOGSPARSE);
	TstModel   *model = create_model(&c, 8);
	int			B = 4, L = c.context, H = c.horizon, Q = c.n_quantiles;
	double		x[4 * 12], out[4 * 2 * 3];
	float		xn[12], pred[2 * 3];
	char		errmsg[TST_ERRMSG_LEN];
	TstRng		rng;

	tst_rng_seed(&rng, 1);
	random_windows(x, B, L, &rng);
	/* Scale the head so that raw quantile outputs often cross. */
	for (int64_t i = 0; i < tst_model_tensor(model, tst_model_num_tensors(model) - 2)->size; i++)
		tst_model_tensor(model, tst_model_num_tensors(model) - 2)->data[i] *= 20.0f;
	CHECK(tst_model_forecast(model, x, B, out, errmsg) == TST_OK);
	for (int i = 0; i < B * H; i++)
		for (int q = 1; q < Q; q++)
			CHECK(out[i * Q + q] >= out[i * Q + q - 1]);

	/* Each step's values are the sorted de-normalized training predictions. */
	for (int b = 0; b < B; b++)
	{
		double		mean, scale;

		tst_normalize_window(x + b * L, L, xn, &mean, &scale);
		CHECK(tst_model_forward(model, xn, NULL, 1, false, NULL, pred, NULL, errmsg) == TST_OK);
		for (int h = 0; h < H; h++)
		{
			double		v[3];

			for (int q = 0; q < Q; q++)
				v[q] = (double) pred[h * Q + q] * scale + mean;
			for (int i = 1; i < Q; i++)
				for (int j = i; j > 0 && v[j] < v[j - 1]; j--)
				{
					double		t = v[j];

					v[j] = v[j - 1];
					v[j - 1] = t;
				}
			for (int q = 0; q < Q; q++)
				CHECK_CLOSE(out[(b * H + h) * Q + q], v[q], 1e-6);
		}
	}
	tst_model_free(model);
}

TEST(batch_results_independent_of_batch)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOCAL);
	TstModel   *model = create_model(&c, 11);
	enum
	{
		B = 300
	};
	int			L = c.context, HQ = c.horizon * c.n_quantiles;
	double	   *x = malloc(sizeof(double) * B * L);
	double	   *all = malloc(sizeof(double) * B * HQ);
	double		one[6];
	char		errmsg[TST_ERRMSG_LEN];
	TstRng		rng;
	bool		same = true;

	if (x == NULL || all == NULL || model == NULL)
		abort();
	tst_rng_seed(&rng, 2);
	random_windows(x, B, L, &rng);
	/* 300 windows run as more than one chunk. */
	CHECK(tst_model_forecast(model, x, B, all, errmsg) == TST_OK);
	for (int b = 0; b < B; b += 37)
	{
		CHECK(tst_model_forecast(model, x + b * L, 1, one, errmsg) == TST_OK);
		if (memcmp(one, all + b * HQ, sizeof(one)) != 0)
			same = false;
	}
	CHECK(same);

	/* Training forward with a small, a large, then a small batch again. */
	{
		float		xn[5 * 12], yn[5 * 2], pred5[5 * 6], pred1[6], loss;

		fill_noise(xn, 5 * 12, &rng);
		fill_noise(yn, 5 * 2, &rng);
		CHECK(tst_model_forward(model, xn + 12, yn + 2, 1, false, NULL, pred1, &loss, errmsg) == TST_OK);
		CHECK(tst_model_forward(model, xn, yn, 5, false, NULL, pred5, &loss, errmsg) == TST_OK);
		CHECK(memcmp(pred1, pred5 + 6, sizeof(pred1)) == 0);
		CHECK(tst_model_forward(model, xn + 12, yn + 2, 1, false, NULL, pred1, &loss, errmsg) == TST_OK);
		CHECK(memcmp(pred1, pred5 + 6, sizeof(pred1)) == 0);
	}
	tst_model_free(model);
	free(x);
	free(all);
}

TEST(unused_oldest_steps_ignored)
{
	TstConfig	c = tiny_config(TST_ATTENTION_DENSE);
	TstModel   *model;
	float		xn[11], pred_a[6], pred_b[6], loss;
	char		errmsg[TST_ERRMSG_LEN];
	TstRng		rng;

	/* L = 11, P = 4, S = 2: (L - P) % S = 1, so step 0 is not used. */
	c.context = 11;
	model = create_model(&c, 3);
	tst_rng_seed(&rng, 4);
	fill_noise(xn, 11, &rng);
	CHECK(tst_model_forward(model, xn, NULL, 1, false, NULL, pred_a, &loss, errmsg) == TST_OK);
	xn[0] += 5.0f;
	CHECK(tst_model_forward(model, xn, NULL, 1, false, NULL, pred_b, &loss, errmsg) == TST_OK);
	CHECK(memcmp(pred_a, pred_b, sizeof(pred_a)) == 0);
	xn[10] += 5.0f;
	CHECK(tst_model_forward(model, xn, NULL, 1, false, NULL, pred_b, &loss, errmsg) == TST_OK);
	CHECK(memcmp(pred_a, pred_b, sizeof(pred_a)) != 0);
	tst_model_free(model);
}

TEST(loss_matches_pinball_of_predictions)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOCAL);
	TstModel   *model = create_model(&c, 6);
	float		xn[3 * 12], yn[3 * 2], pred[3 * 6], loss;
	char		errmsg[TST_ERRMSG_LEN];
	double		expected;
	TstRng		rng;

	tst_rng_seed(&rng, 5);
	fill_noise(xn, 36, &rng);
	fill_noise(yn, 6, &rng);
	CHECK(tst_model_forward(model, xn, yn, 3, false, NULL, pred, &loss, errmsg) == TST_OK);
	expected = eval_loss(model, xn, yn, 3, pred);
	CHECK_CLOSE(loss, expected, 1e-6);
	tst_model_free(model);
}

/* Errors */

TEST(forward_and_backward_errors)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOCAL);
	TstModel   *model;
	float		xn[12] = {0}, yn[2] = {0}, loss;
	double		x[12] = {0}, out[6];
	char		errmsg[TST_ERRMSG_LEN];

	c.dropout = 0.1f;
	model = create_model(&c, 1);
	CHECK(tst_model_backward(model, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_model_enable_grad(model, errmsg) == TST_OK);
	CHECK(tst_model_enable_grad(model, errmsg) == TST_OK);
	CHECK(tst_model_backward(model, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_model_forward(model, xn, yn, 0, false, NULL, NULL, &loss, errmsg) == TST_ERR_ARGUMENT);
	CHECK(tst_model_forward(model, xn, yn, 1, true, NULL, NULL, &loss, errmsg) == TST_ERR_ARGUMENT);
	xn[3] = NAN;
	CHECK(tst_model_forward(model, xn, yn, 1, false, NULL, NULL, &loss, errmsg) == TST_ERR_NUMERIC);
	xn[3] = 0.0f;
	yn[1] = INFINITY;
	CHECK(tst_model_forward(model, xn, yn, 1, false, NULL, NULL, &loss, errmsg) == TST_ERR_NUMERIC);
	yn[1] = 0.0f;
	CHECK(tst_model_forward(model, xn, yn, 1, false, NULL, NULL, &loss, errmsg) == TST_OK);
	CHECK(tst_model_backward(model, errmsg) == TST_OK);

	/* A forecast replaces the activations, so there is nothing to differentiate. */
	CHECK(tst_model_forecast(model, x, 1, out, errmsg) == TST_OK);
	CHECK(tst_model_backward(model, errmsg) == TST_ERR_ARGUMENT);

	x[5] = NAN;
	CHECK(tst_model_forecast(model, x, 1, out, errmsg) == TST_ERR_NUMERIC);
	CHECK(strstr(errmsg, "non-finite") != NULL);
	x[5] = 1e308;
	x[6] = 1e308;
	CHECK(tst_model_forecast(model, x, 1, out, errmsg) == TST_ERR_NUMERIC);
	CHECK(tst_model_forecast(model, x, 0, out, errmsg) == TST_ERR_ARGUMENT);
	tst_model_free(model);

	c.d_model = 5;
	CHECK(tst_model_create(&c, &tst_malloc_allocator, &model, errmsg) == TST_ERR_CONFIG);
	CHECK(model == NULL);
	CHECK(strcmp(errmsg, "d_model 5 is not a multiple of n_heads 2") == 0);
}

/* An allocator that fails after a set number of successes and counts live blocks. */
typedef struct FailingAllocator
{
	int			remaining;
	int			live;
} FailingAllocator;

static void *
failing_alloc(void *ctx, size_t size)
{
	FailingAllocator *f = ctx;
	void	   *ptr;

	if (f->remaining == 0)
		return NULL;
	f->remaining--;
	ptr = malloc(size);
	if (ptr != NULL)
		f->live++;
	return ptr;
}

static void
failing_free(void *ctx, void *ptr)
{
	FailingAllocator *f = ctx;

	if (ptr != NULL)
		f->live--;
	free(ptr);
}

TEST(allocation_failures_are_clean)
{
	TstConfig	c = tiny_config(TST_ATTENTION_LOGSPARSE);
	float		xn[2 * 12] = {0}, yn[2 * 2] = {0}, loss;	/* B = 2 windows of L = 12, H = 2 */
	bool		reached_ok = false;

	for (int budget = 0; budget < 30 && !reached_ok; budget++)
	{
		FailingAllocator state = {budget, 0};
		TstAllocator allocator = {failing_alloc, failing_free, &state};
		TstModel   *model = NULL;
		char		errmsg[TST_ERRMSG_LEN] = "";
		TstStatus	status;

		status = tst_model_create(&c, &allocator, &model, errmsg);
		if (status == TST_OK)
		{
			tst_model_init(model, 1);
			status = tst_model_enable_grad(model, errmsg);
			if (status == TST_OK)
				status = tst_model_forward(model, xn, yn, 2, false, NULL, NULL, &loss, errmsg);
			if (status == TST_OK)
				status = tst_model_backward(model, errmsg);
			reached_ok = status == TST_OK;
			tst_model_free(model);
		}
		else
			CHECK(model == NULL);
		if (!reached_ok)
		{
			CHECK(status == TST_ERR_NOMEM);
			CHECK(strstr(errmsg, "out of memory") != NULL);
		}
		CHECK(state.live == 0);
	}
	CHECK(reached_ok);
}

TEST(two_models_are_independent)
{
	TstConfig	c = tiny_config(TST_ATTENTION_DENSE);
	TstModel   *a = create_model(&c, 1);
	TstModel   *b;
	double		x[12], out_a[6], out_b[6], again[6];
	char		errmsg[TST_ERRMSG_LEN];
	TstRng		rng;

	c.n_layers = 1;
	b = create_model(&c, 2);
	tst_rng_seed(&rng, 9);
	random_windows(x, 1, 12, &rng);
	CHECK(tst_model_forecast(a, x, 1, out_a, errmsg) == TST_OK);
	CHECK(tst_model_forecast(b, x, 1, out_b, errmsg) == TST_OK);
	CHECK(tst_model_forecast(a, x, 1, again, errmsg) == TST_OK);
	CHECK(memcmp(out_a, again, sizeof(again)) == 0);
	CHECK(memcmp(out_a, out_b, sizeof(out_b)) != 0);
	tst_model_free(a);
	tst_model_free(b);
}

int
main(void)
{
	RUN(tensor_table_order_and_shapes);
	RUN(init_follows_the_spec);
	RUN(normalize_constant_and_zero_windows);
	RUN(normalize_known_window);
	RUN(normalize_large_level_small_spread);
	RUN(model_gradients_each_attention);
	RUN(model_gradients_without_patching);
	RUN(model_gradients_odd_sizes);
	RUN(model_gradients_with_dropout);
	RUN(forecast_sorted_and_denormalized);
	RUN(batch_results_independent_of_batch);
	RUN(unused_oldest_steps_ignored);
	RUN(loss_matches_pinball_of_predictions);
	RUN(forward_and_backward_errors);
	RUN(allocation_failures_are_clean);
	RUN(two_models_are_independent);
	return test_summary();
}
