/*
 * test_kernels.c
 *		Kernel tests: sgemm against the naive product, finite-difference
 *		gradient checks for every backward kernel, and attention against a
 *		dense masked reference.
 *
 * Gradient checks use the objective J = sum(r * out) for a fixed random r,
 * computed in double from float outputs, so that d J / d out = r feeds the
 * backward kernel. Central differences with step 1e-2 on float inputs keep
 * rounding noise near 1e-5 relative. The tolerance is 5e-3 relative, in the
 * 2-norm over the whole gradient.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels.h"

#define FD_STEP 1e-2f
#define GRAD_TOL 5e-3

static TstRng test_rng;

static void
fill_uniform(float *x, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * (float) tst_rng_uniform(&test_rng);
}

static float *
new_floats(size_t n)
{
	float	   *x = calloc(n == 0 ? 1 : n, sizeof(float));

	if (x == NULL)
		abort();
	return x;
}

static double
weighted_sum(const float *out, const float *r, size_t n)
{
	double		acc = 0.0;

	for (size_t i = 0; i < n; i++)
		acc += (double) out[i] * r[i];
	return acc;
}

/* Relative 2-norm error of a against b; 0 when both are zero. */
static double
relative_error(const double *a, const float *b, size_t n)
{
	double		diff = 0.0;
	double		norm = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		diff += (a[i] - b[i]) * (a[i] - b[i]);
		norm += (double) b[i] * b[i];
	}
	if (norm == 0.0)
		return sqrt(diff);
	return sqrt(diff / norm);
}

/*
 * A kernel under test: forward writes out from the current inputs, all of
 * which the closure reaches through ctx.
 */
typedef void (*ForwardFn) (void *ctx);

/*
 * Central differences of J = sum(r * out) with respect to every element of
 * x (n), compared with the analytic gradient grad (n).
 */
static double
check_gradient(ForwardFn forward, void *ctx, float *x, size_t n,
			   const float *out, const float *r, size_t n_out, const float *grad)
{
	double	   *numeric = malloc(n * sizeof(double));
	double		err;

	if (numeric == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
	{
		float		saved = x[i];
		double		plus;
		double		minus;

		x[i] = saved + FD_STEP;
		forward(ctx);
		plus = weighted_sum(out, r, n_out);
		x[i] = saved - FD_STEP;
		forward(ctx);
		minus = weighted_sum(out, r, n_out);
		x[i] = saved;
		numeric[i] = (plus - minus) / (2.0 * ((double) (saved + FD_STEP) - (double) saved));
	}
	forward(ctx);
	err = relative_error(numeric, grad, n);
	free(numeric);
	return err;
}

/* Linear */

typedef struct LinearCase
{
	int			rows, in, out_dim;
	float	   *inp, *weight, *bias, *out;
} LinearCase;

static void
linear_case_forward(void *ctx)
{
	LinearCase *c = ctx;

	linear_forward(c->out, c->inp, c->weight, c->bias, c->rows, c->in, c->out_dim);
}

TEST(linear_sgemm_matches_naive)
{
	static const int sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {64, 33, 17}, {3, 128, 96}};

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
	{
		int			R = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
		float	   *inp = new_floats((size_t) R * I);
		float	   *w = new_floats((size_t) O * I);
		float	   *bias = new_floats(O);
		float	   *fast = new_floats((size_t) R * O);
		float	   *slow = new_floats((size_t) R * O);
		double		max_err = 0.0;

		fill_uniform(inp, (size_t) R * I, -1, 1);
		fill_uniform(w, (size_t) O * I, -1, 1);
		fill_uniform(bias, O, -1, 1);
		for (int with_bias = 0; with_bias < 2; with_bias++)
		{
			/* Garbage in out must not leak into the result. */
			for (size_t i = 0; i < (size_t) R * O; i++)
				fast[i] = NAN;
			linear_forward(fast, inp, w, with_bias ? bias : NULL, R, I, O);
			linear_forward_naive(slow, inp, w, with_bias ? bias : NULL, R, I, O);
			for (size_t i = 0; i < (size_t) R * O; i++)
			{
				double		e = fabs((double) fast[i] - slow[i]);

				if (!(e <= max_err))
					max_err = isnan(e) ? INFINITY : e;
			}
		}
		CHECK(max_err < 1e-4 * sqrt((double) I));
		free(inp);
		free(w);
		free(bias);
		free(fast);
		free(slow);
	}
}

TEST(linear_backward_matches_differences)
{
	LinearCase	c = {6, 5, 4, NULL, NULL, NULL, NULL};
	size_t		nin = (size_t) c.rows * c.in, nw = (size_t) c.out_dim * c.in;
	size_t		nout = (size_t) c.rows * c.out_dim;
	float	   *r = new_floats(nout);
	float	   *dinp = new_floats(nin);
	float	   *dw = new_floats(nw);
	float	   *db = new_floats(c.out_dim);

	c.inp = new_floats(nin);
	c.weight = new_floats(nw);
	c.bias = new_floats(c.out_dim);
	c.out = new_floats(nout);
	fill_uniform(c.inp, nin, -1, 1);
	fill_uniform(c.weight, nw, -1, 1);
	fill_uniform(c.bias, c.out_dim, -1, 1);
	fill_uniform(r, nout, -1, 1);

	linear_case_forward(&c);
	linear_backward(dinp, dw, db, r, c.inp, c.weight, c.rows, c.in, c.out_dim);
	CHECK(check_gradient(linear_case_forward, &c, c.inp, nin, c.out, r, nout, dinp) < GRAD_TOL);
	CHECK(check_gradient(linear_case_forward, &c, c.weight, nw, c.out, r, nout, dw) < GRAD_TOL);
	CHECK(check_gradient(linear_case_forward, &c, c.bias, c.out_dim, c.out, r, nout, db) < GRAD_TOL);

	/* Backward accumulates: a second call doubles every gradient. */
	{
		float		before = dw[3];

		linear_backward(dinp, dw, db, r, c.inp, c.weight, c.rows, c.in, c.out_dim);
		CHECK_CLOSE(dw[3], 2.0f * before, 1e-5);
	}
	free(r);
	free(dinp);
	free(dw);
	free(db);
	free(c.inp);
	free(c.weight);
	free(c.bias);
	free(c.out);
}

/* Layer norm */

typedef struct NormCase
{
	int			rows, C;
	float	   *inp, *weight, *bias, *out, *mean, *rstd;
} NormCase;

static void
norm_case_forward(void *ctx)
{
	NormCase   *c = ctx;

	layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->weight, c->bias, c->rows, c->C);
}

TEST(layernorm_forward_normalizes)
{
	float		x[] = {1, 2, 3, 4, 10, 10, 10, 10};
	float		w[] = {1, 1, 1, 1};
	float		b[] = {0, 0, 0, 0};
	float		y[8], mean[2], rstd[2];

	layernorm_forward(y, mean, rstd, x, w, b, 2, 4);
	CHECK_CLOSE(mean[0], 2.5, 1e-6);
	CHECK_CLOSE(rstd[0], 1.0 / sqrt(1.25 + 1e-5), 1e-6);
	CHECK_CLOSE(y[0], -1.5 / sqrt(1.25 + 1e-5), 1e-6);
	/* A constant row becomes the bias, without NaN. */
	CHECK_CLOSE(y[5], 0.0, 1e-6);
	CHECK(isfinite(rstd[1]));
}

TEST(layernorm_backward_matches_differences)
{
	NormCase	c = {5, 7, NULL, NULL, NULL, NULL, NULL, NULL};
	size_t		n = (size_t) c.rows * c.C;
	float	   *r = new_floats(n);
	float	   *dinp = new_floats(n);
	float	   *dw = new_floats(c.C);
	float	   *db = new_floats(c.C);

	c.inp = new_floats(n);
	c.weight = new_floats(c.C);
	c.bias = new_floats(c.C);
	c.out = new_floats(n);
	c.mean = new_floats(c.rows);
	c.rstd = new_floats(c.rows);
	fill_uniform(c.inp, n, -2, 2);
	fill_uniform(c.weight, c.C, 0.5f, 1.5f);
	fill_uniform(c.bias, c.C, -1, 1);
	fill_uniform(r, n, -1, 1);

	norm_case_forward(&c);
	layernorm_backward(dinp, dw, db, r, c.inp, c.weight, c.mean, c.rstd, c.rows, c.C);
	CHECK(check_gradient(norm_case_forward, &c, c.inp, n, c.out, r, n, dinp) < GRAD_TOL);
	CHECK(check_gradient(norm_case_forward, &c, c.weight, c.C, c.out, r, n, dw) < GRAD_TOL);
	CHECK(check_gradient(norm_case_forward, &c, c.bias, c.C, c.out, r, n, db) < GRAD_TOL);
	free(r);
	free(dinp);
	free(dw);
	free(db);
	free(c.inp);
	free(c.weight);
	free(c.bias);
	free(c.out);
	free(c.mean);
	free(c.rstd);
}

/* GELU */

typedef struct GeluCase
{
	size_t		n;
	float	   *inp, *out;
} GeluCase;

static void
gelu_case_forward(void *ctx)
{
	GeluCase   *c = ctx;

	gelu_forward(c->out, c->inp, c->n);
}

TEST(gelu_forward_is_exact)
{
	float		x[] = {-3.0f, -1.0f, 0.0f, 0.5f, 2.0f};
	float		y[5];

	gelu_forward(y, x, 5);
	for (int i = 0; i < 5; i++)
		CHECK_CLOSE(y[i], 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))), 1e-6);
	/* The tanh approximation gives 0.84119 at 1; the exact form 0.841345. */
	gelu_forward(y, (float[]) {1.0f}, 1);
	CHECK_CLOSE(y[0], 0.8413447, 1e-6);
}

/* Forward and derivative against erf in double over [-20, 20]. */
TEST(gelu_accuracy_sweep)
{
	int			n = 40001;
	float	   *x = new_floats(n);
	float	   *y = new_floats(n);
	float	   *ones = new_floats(n);
	float	   *dy = new_floats(n);
	double		worst_rel = 0.0;
	double		worst_abs = 0.0;
	double		worst_grad = 0.0;

	for (int i = 0; i < n; i++)
	{
		x[i] = -20.0f + 40.0f * (float) i / (float) (n - 1);
		ones[i] = 1.0f;
	}
	gelu_forward(y, x, n);
	gelu_backward(dy, x, ones, n);
	for (int i = 0; i < n; i++)
	{
		double		xd = x[i];
		double		cdf = 0.5 * erfc(-xd / sqrt(2.0));
		double		grad = cdf + xd * exp(-0.5 * xd * xd) * 0.398942280401432678;

		/*
		 * Relative error where the CDF is above 1e-7 (x above about -5.2).
		 * Further out, x * x rounded to float shifts the exponential by up
		 * to x^2 * 6e-8 relative, so only the absolute error is bounded.
		 */
		if (cdf > 1e-7)
			worst_rel = fmax(worst_rel, fabs((double) y[i] - xd * cdf) / fabs(xd * cdf + 1e-300));
		worst_abs = fmax(worst_abs, fabs((double) y[i] - xd * cdf) / fmax(1.0, fabs(xd * cdf)));
		worst_grad = fmax(worst_grad, fabs((double) dy[i] - grad));
	}
	CHECK(worst_rel < 1e-6);
	CHECK(worst_abs < 2.5e-7);	/* about 2 float ulps at 1 */
	CHECK(worst_grad < 1e-6);
	printf("    worst relative error %.2g, absolute %.2g, derivative %.2g\n",
		   worst_rel, worst_abs, worst_grad);
	free(x);
	free(y);
	free(ones);
	free(dy);
}

/* NaN and infinities behave as with erff, and -0 gives 0. */
TEST(gelu_special_values)
{
	float		x[] = {NAN, INFINITY, -INFINITY, -0.0f};
	float		y[4];

	gelu_forward(y, x, 4);
	CHECK(isnan(y[0]));
	CHECK(isinf(y[1]));
	CHECK(y[1] > 0);
	CHECK(isnan(y[2]));
	CHECK(y[3] == 0.0f);
}

/* The vectorized blocks and the scalar tail give the same bits. */
TEST(gelu_blocks_match_tail)
{
	int			n = 37;
	float	   *x = new_floats(n);
	float	   *whole = new_floats(n);
	float	   *one = new_floats(1);
	float	   *dwhole = new_floats(n);
	float	   *done = new_floats(1);
	float	   *r = new_floats(n);

	fill_uniform(x, n, -6, 6);
	fill_uniform(r, n, -1, 1);
	gelu_forward(whole, x, n);
	gelu_backward(dwhole, x, r, n);
	for (int i = 0; i < n; i++)
	{
		done[0] = 0.0f;
		gelu_forward(one, x + i, 1);
		gelu_backward(done, x + i, r + i, 1);
		CHECK(memcmp(one, whole + i, sizeof(float)) == 0);
		CHECK(memcmp(done, dwhole + i, sizeof(float)) == 0);
	}
	free(x);
	free(whole);
	free(one);
	free(dwhole);
	free(done);
	free(r);
}

TEST(gelu_backward_matches_differences)
{
	GeluCase	c = {40, NULL, NULL};
	float	   *r = new_floats(c.n);
	float	   *dinp = new_floats(c.n);

	c.inp = new_floats(c.n);
	c.out = new_floats(c.n);
	fill_uniform(c.inp, c.n, -4, 4);
	fill_uniform(r, c.n, -1, 1);
	gelu_case_forward(&c);
	gelu_backward(dinp, c.inp, r, c.n);
	CHECK(check_gradient(gelu_case_forward, &c, c.inp, c.n, c.out, r, c.n, dinp) < GRAD_TOL);
	free(r);
	free(dinp);
	free(c.inp);
	free(c.out);
}

/* Attention */

typedef struct AttnCase
{
	int			B, N, D, NH;
	TstPattern	pattern;
	float	   *qkv, *out, *probs;
} AttnCase;

static void
attn_case_forward(void *ctx)
{
	AttnCase   *c = ctx;

	attention_forward(c->out, c->probs, c->qkv, &c->pattern, c->B, c->N, c->D, c->NH);
}

static bool
pattern_contains(const TstPattern *p, int i, int key)
{
	for (int64_t j = p->rowptr[i]; j < p->rowptr[i + 1]; j++)
		if (p->cols[j] == key)
			return true;
	return false;
}

/* Masked dense attention in double: the straightforward definition. */
static void
attention_reference(double *out, const AttnCase *c)
{
	int			DH = c->D / c->NH;
	size_t		row3 = (size_t) 3 * c->D;
	double	   *scores = malloc((size_t) c->N * sizeof(double));

	if (scores == NULL)
		abort();
	for (int b = 0; b < c->B; b++)
		for (int h = 0; h < c->NH; h++)
			for (int i = 0; i < c->N; i++)
			{
				const float *q = c->qkv + ((size_t) b * c->N + i) * row3 + h * DH;
				double		max = -INFINITY, sum = 0.0;

				for (int k = 0; k < c->N; k++)
				{
					const float *key = c->qkv + ((size_t) b * c->N + k) * row3 + c->D + h * DH;
					double		s = 0.0;

					if (!pattern_contains(&c->pattern, i, k))
					{
						scores[k] = -INFINITY;
						continue;
					}
					for (int d = 0; d < DH; d++)
						s += (double) q[d] * key[d];
					scores[k] = s / sqrt((double) DH);
					if (scores[k] > max)
						max = scores[k];
				}
				for (int k = 0; k < c->N; k++)
				{
					scores[k] = exp(scores[k] - max);
					sum += scores[k];
				}
				for (int d = 0; d < DH; d++)
				{
					double		acc = 0.0;

					for (int k = 0; k < c->N; k++)
						acc += scores[k] / sum *
							c->qkv[((size_t) b * c->N + k) * row3 + 2 * c->D + h * DH + d];
					out[((size_t) b * c->N + i) * c->D + h * DH + d] = acc;
				}
			}
	free(scores);
}

static void
check_attention(TstAttentionKind kind, int window, int B, int N, int D, int NH)
{
	AttnCase	c = {B, N, D, NH, {0}, NULL, NULL, NULL};
	size_t		nqkv = (size_t) B * N * 3 * D, nout = (size_t) B * N * D;
	float	   *r = new_floats(nout);
	float	   *dqkv = new_floats(nqkv);
	double	   *expected = malloc(nout * sizeof(double));
	double		err;
	char		errmsg[TST_ERRMSG_LEN];

	if (expected == NULL)
		abort();
	CHECK(tst_pattern_build(&c.pattern, kind, window, N, &tst_malloc_allocator, errmsg) == TST_OK);
	c.qkv = new_floats(nqkv);
	c.out = new_floats(nout);
	c.probs = new_floats((size_t) B * NH * c.pattern.nnz);
	fill_uniform(c.qkv, nqkv, -1.5f, 1.5f);
	fill_uniform(r, nout, -1, 1);

	attn_case_forward(&c);
	attention_reference(expected, &c);
	err = relative_error(expected, c.out, nout);
	if (!(err < 1e-5))
		printf("    %s attention forward error %g\n", tst_attention_name(kind), err);
	CHECK(err < 1e-5);

	attention_backward(dqkv, r, c.qkv, c.probs, &c.pattern, B, N, D, NH);
	err = check_gradient(attn_case_forward, &c, c.qkv, nqkv, c.out, r, nout, dqkv);
	if (!(err < GRAD_TOL))
		printf("    %s attention gradient error %g\n", tst_attention_name(kind), err);
	CHECK(err < GRAD_TOL);

	tst_pattern_free(&c.pattern, &tst_malloc_allocator);
	free(r);
	free(dqkv);
	free(expected);
	free(c.qkv);
	free(c.out);
	free(c.probs);
}

TEST(attention_dense_matches_reference)
{
	check_attention(TST_ATTENTION_DENSE, 1, 2, 7, 6, 2);
}

TEST(attention_local_matches_reference)
{
	check_attention(TST_ATTENTION_LOCAL, 3, 2, 10, 6, 3);
	check_attention(TST_ATTENTION_LOCAL, 1, 1, 4, 4, 1);
	check_attention(TST_ATTENTION_LOCAL, 20, 1, 5, 4, 2);
}

TEST(attention_logsparse_matches_reference)
{
	check_attention(TST_ATTENTION_LOGSPARSE, 2, 2, 19, 4, 2);
	check_attention(TST_ATTENTION_LOGSPARSE, 1, 1, 9, 3, 1);
}

TEST(attention_softmax_is_stable)
{
	AttnCase	c = {1, 3, 2, 1, {0}, NULL, NULL, NULL};
	char		errmsg[TST_ERRMSG_LEN];

	CHECK(tst_pattern_build(&c.pattern, TST_ATTENTION_DENSE, 1, 3, &tst_malloc_allocator, errmsg) == TST_OK);
	c.qkv = new_floats(18);
	c.out = new_floats(6);
	c.probs = new_floats(c.pattern.nnz);
	/* Scores near 1e4 overflow expf without the max subtraction. */
	for (int i = 0; i < 3; i++)
	{
		c.qkv[i * 6 + 0] = 100.0f;
		c.qkv[i * 6 + 1] = 100.0f;
		c.qkv[i * 6 + 2] = 100.0f + i;
		c.qkv[i * 6 + 3] = 100.0f;
		c.qkv[i * 6 + 4] = (float) i;
		c.qkv[i * 6 + 5] = 1.0f;
	}
	attn_case_forward(&c);
	for (int i = 0; i < 6; i++)
		CHECK(isfinite(c.out[i]));
	/* The last key's score is larger by 141; it takes all the weight. */
	CHECK_CLOSE(c.out[4], 2.0, 1e-5);
	tst_pattern_free(&c.pattern, &tst_malloc_allocator);
	free(c.qkv);
	free(c.out);
	free(c.probs);
}

/* Pinball loss */

typedef struct PinballCase
{
	int			B, H, Q;
	float	   *pred, *target, *quantiles, loss;
} PinballCase;

static void
pinball_case_forward(void *ctx)
{
	PinballCase *c = ctx;

	pinball_forward(&c->loss, c->pred, c->target, c->quantiles, c->B, c->H, c->Q);
}

TEST(pinball_loss_by_hand)
{
	float		pred[] = {0.0f, 1.0f, 2.0f};
	float		target[] = {1.0f};
	float		tau[] = {0.1f, 0.5f, 0.9f};
	float		loss;
	float		dpred[3] = {0};

	/* u = 1, 0, -1: 0.1 * 1, 0, (0.9 - 1) * -1; mean over three. */
	pinball_forward(&loss, pred, target, tau, 1, 1, 3);
	CHECK_CLOSE(loss, (0.1 + 0.0 + 0.1) / 3.0, 1e-7);
	pinball_backward(dpred, pred, target, tau, 1, 1, 3);
	CHECK_CLOSE(dpred[0], -0.1 / 3.0, 1e-7);
	CHECK_CLOSE(dpred[1], 0.5 / 3.0, 1e-7);
	CHECK_CLOSE(dpred[2], 0.1 / 3.0, 1e-7);
}

TEST(pinball_backward_matches_differences)
{
	PinballCase c = {3, 4, 3, NULL, NULL, NULL, 0.0f};
	size_t		n = (size_t) c.B * c.H * c.Q;
	float		one = 1.0f;
	float	   *dpred = new_floats(n);
	float		tau[] = {0.1f, 0.5f, 0.9f};

	c.pred = new_floats(n);
	c.target = new_floats((size_t) c.B * c.H);
	c.quantiles = tau;
	fill_uniform(c.target, (size_t) c.B * c.H, -1, 1);
	/* Keep every residual farther than the step from the kink at 0. */
	for (size_t i = 0; i < n; i++)
	{
		float		u = 0.1f + (float) tst_rng_uniform(&test_rng);

		c.pred[i] = c.target[i / c.Q] + (i % 2 ? u : -u);
	}
	pinball_case_forward(&c);
	pinball_backward(dpred, c.pred, c.target, c.quantiles, c.B, c.H, c.Q);
	CHECK(check_gradient(pinball_case_forward, &c, c.pred, n, &c.loss, &one, 1, dpred) < GRAD_TOL);
	free(dpred);
	free(c.pred);
	free(c.target);
}

/* Dropout and residual */

TEST(dropout_mask_and_backward)
{
	size_t		n = 20001;
	float	   *x = new_floats(n);
	float	   *y = new_floats(n);
	float	   *mask = new_floats(n);
	float	   *dx = new_floats(n);
	size_t		dropped = 0;
	TstRng		rng;

	tst_rng_seed(&rng, 7);
	fill_uniform(x, n, 1, 2);
	dropout_forward(y, mask, x, 0.25f, n, &rng);
	for (size_t i = 0; i < n; i++)
	{
		if (mask[i] == 0.0f)
			dropped++;
		else
			CHECK_CLOSE(mask[i], 1.0 / 0.75, 1e-6);
		if (y[i] != x[i] * mask[i])
		{
			CHECK(y[i] == x[i] * mask[i]);
			break;
		}
	}
	/* 5000 expected drops; the standard deviation is about 61. */
	CHECK(dropped > 4700);
	CHECK(dropped < 5300);
	dropout_backward(dx, x, mask, n);
	CHECK(dx[n - 1] == x[n - 1] * mask[n - 1]);

	/* p = 0 keeps everything at scale 1. */
	dropout_forward(y, mask, x, 0.0f, n, &rng);
	CHECK(mask[0] == 1.0f);
	CHECK(mask[n - 1] == 1.0f);
	CHECK(y[5] == x[5]);
	free(x);
	free(y);
	free(mask);
	free(dx);
}

TEST(residual_forward_and_backward)
{
	float		a[] = {1, 2, 3}, b[] = {10, 20, 30}, out[3];
	float		da[3] = {0}, db[3] = {1, 1, 1}, g[] = {0.5f, -1, 2};

	residual_forward(out, a, b, 3);
	CHECK(out[0] == 11);
	CHECK(out[2] == 33);
	residual_backward(da, db, g, 3);
	CHECK(da[1] == -1);
	CHECK(db[2] == 3);
}

int
main(void)
{
	tst_rng_seed(&test_rng, 12345);
	RUN(linear_sgemm_matches_naive);
	RUN(linear_backward_matches_differences);
	RUN(layernorm_forward_normalizes);
	RUN(layernorm_backward_matches_differences);
	RUN(gelu_forward_is_exact);
	RUN(gelu_accuracy_sweep);
	RUN(gelu_special_values);
	RUN(gelu_blocks_match_tail);
	RUN(gelu_backward_matches_differences);
	RUN(attention_dense_matches_reference);
	RUN(attention_local_matches_reference);
	RUN(attention_logsparse_matches_reference);
	RUN(attention_softmax_is_stable);
	RUN(pinball_loss_by_hand);
	RUN(pinball_backward_matches_differences);
	RUN(dropout_mask_and_backward);
	RUN(residual_forward_and_backward);
	return test_summary();
}
