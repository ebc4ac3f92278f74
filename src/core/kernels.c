/*
 * kernels.c
 *		Forward and backward kernels for every layer of the model.
 *
 * Linear layers run through OpenBLAS sgemm on (R, I) row blocks, so a batch
 * of B windows of N tokens is one call over B*N rows. The other kernels are
 * plain loops over contiguous rows that the compiler can vectorize.
 *
 * Sums over a row (dot products, layer norm statistics) use LANES separate
 * accumulators added in a fixed order at the end: without -ffast-math the
 * compiler may not reorder a single running sum, so a one-accumulator loop
 * runs one add at a time. The order is fixed, so results are the same on
 * every run. The hot kernels are compiled twice, for baseline x86-64 and for
 * AVX2 with FMA, and the second is chosen once when the CPU has both; the
 * two round differently, well within the parity tolerance.
 *
 * Attention only computes scores on the entries of a TstPattern: a query row
 * costs O(row length * DH), so local attention is O(N W) per head and never
 * builds a masked N x N matrix.
 */
/* sigset_t and pthread_sigmask under -std=c11. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include <cblas.h>

#include "kernels.h"

#define LAYERNORM_EPS 1e-5f

/* Columns per block of the double accumulators in the row reductions. */
#define REDUCE_BLOCK 256

/* Accumulators of the row sums; see the header comment. */
#define LANES 8

/* Keys per query row whose g . v the attention backward keeps on the stack. */
#define GV_CACHE 256

/* Largest head size whose attention output accumulates in a local array. */
#define MAX_FIXED_DH 64

/* Hot kernel bodies are inlined into a baseline and an AVX2 wrapper. */
#define KERNEL_BODY static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX2_PATH 1

/* Whether the CPU runs the AVX2 and FMA build; decided on first use. */
static bool
use_avx2(void)
{
	static int	supported = -1;

	if (supported < 0)
	{
		__builtin_cpu_init();
		supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	}
	return supported;
}

#define DISPATCH(name, params, args) \
	static void name##_baseline params { name##_body args; } \
	__attribute__((target("avx2,fma"))) \
	static void name##_avx2 params { name##_body args; } \
	static void name##_serial params \
	{ \
		if (use_avx2()) \
			name##_avx2 args; \
		else \
			name##_baseline args; \
	}
#else
#define DISPATCH(name, params, args) \
	static void name##_serial params { name##_body args; }
#endif

/* Sum of x (n) over LANES accumulators, added in a fixed order. */
KERNEL_BODY float
reduce_lanes(const float *acc)
{
	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

KERNEL_BODY float
sum_lanes(const float *restrict x, int n)
{
	float		acc[LANES] = {0};
	int			i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += x[i + l];
	for (int l = 0; i + l < n; l++)
		acc[l] += x[i + l];
	return reduce_lanes(acc);
}

/* Sum of (x - m)^2 over x (n). */
KERNEL_BODY float
sq_dev_lanes(const float *restrict x, float m, int n)
{
	float		acc[LANES] = {0};
	int			i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += (x[i + l] - m) * (x[i + l] - m);
	for (int l = 0; i + l < n; l++)
		acc[l] += (x[i + l] - m) * (x[i + l] - m);
	return reduce_lanes(acc);
}

/* a . b over n elements. */
KERNEL_BODY float
dot_lanes(const float *restrict a, const float *restrict b, int n)
{
	float		acc[LANES] = {0};
	int			i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += a[i + l] * b[i + l];
	for (int l = 0; i + l < n; l++)
		acc[l] += a[i + l] * b[i + l];
	return reduce_lanes(acc);
}

/*
 * y (n) += a x; y and x never overlap. Written in blocks of LANES, which -O2
 * vectorizes, unlike a plain loop of unknown length.
 */
KERNEL_BODY void
axpy(float *restrict y, float a, const float *restrict x, int n)
{
	int			i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			y[i + l] += a * x[i + l];
	for (; i < n; i++)
		y[i] += a * x[i];
}

/*
 * sums (C) += column sums of x (R, C), accumulated in double: a bias
 * gradient sums many rows that often cancel, and a float running sum would
 * leave rounding noise where the exact sum is zero.
 */
KERNEL_BODY void
sum_rows_body(float *restrict sums, const float *restrict x, int rows, int C)
{
	double		acc[REDUCE_BLOCK];

	for (int c0 = 0; c0 < C; c0 += REDUCE_BLOCK)
	{
		int			width = C - c0 < REDUCE_BLOCK ? C - c0 : REDUCE_BLOCK;

		for (int c = 0; c < width; c++)
			acc[c] = 0.0;
		for (int r = 0; r < rows; r++)
		{
			const float *restrict row = x + (size_t) r * C + c0;

			for (int c = 0; c < width; c++)
				acc[c] += row[c];
		}
		for (int c = 0; c < width; c++)
			sums[c0 + c] += (float) acc[c];
	}
}

DISPATCH(sum_rows, (float *sums, const float *x, int rows, int C), (sums, x, rows, C))

void
linear_forward(float *out, const float *inp, const float *weight,
			   const float *bias, int rows, int in, int out_dim)
{
	float		beta = 0.0f;

	if (bias != NULL)
	{
		for (int r = 0; r < rows; r++)
			memcpy(out + (size_t) r * out_dim, bias, (size_t) out_dim * sizeof(float));
		beta = 1.0f;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out_dim, in,
				1.0f, inp, in, weight, in, beta, out, out_dim);
}

void
linear_forward_naive(float *out, const float *inp, const float *weight,
					 const float *bias, int rows, int in, int out_dim)
{
	for (int r = 0; r < rows; r++)
	{
		const float *x = inp + (size_t) r * in;

		for (int o = 0; o < out_dim; o++)
		{
			const float *w = weight + (size_t) o * in;
			double		acc = bias != NULL ? bias[o] : 0.0;

			for (int i = 0; i < in; i++)
				acc += (double) x[i] * w[i];
			out[(size_t) r * out_dim + o] = (float) acc;
		}
	}
}

void
linear_backward(float *dinp, float *dweight, float *dbias,
				const float *dout, const float *inp, const float *weight,
				int rows, int in, int out_dim)
{
	if (dinp != NULL)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out_dim,
					1.0f, dout, out_dim, weight, in, 1.0f, dinp, in);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in, rows,
				1.0f, dout, out_dim, inp, in, 1.0f, dweight, in);
	if (dbias != NULL)
		sum_rows_serial(dbias, dout, rows, out_dim);
}

void
patches_forward(float *patches, const float *x, int B, int L, int N, int P, int S)
{
	for (int b = 0; b < B; b++)
	{
		for (int n = 0; n < N; n++)
		{
			int			start = L - P - (N - 1 - n) * S;

			memcpy(patches + ((size_t) b * N + n) * P, x + (size_t) b * L + start,
				   (size_t) P * sizeof(float));
		}
	}
}

void
position_forward(float *out, const float *pos, int B, int N, int D)
{
	size_t		window = (size_t) N * D;

	for (int b = 0; b < B; b++)
	{
		float	   *o = out + b * window;

		for (size_t i = 0; i < window; i++)
			o[i] += pos[i];
	}
}

void
position_backward(float *dpos, const float *dout, int B, int N, int D)
{
	size_t		window = (size_t) N * D;

	for (int b = 0; b < B; b++)
	{
		const float *g = dout + b * window;

		for (size_t i = 0; i < window; i++)
			dpos[i] += g[i];
	}
}

/*
 * GELU needs the standard normal CDF and density. libm's erff is an opaque
 * call per element, so they are computed here in float arithmetic that -O2
 * vectorizes. Selects work on bit patterns, because GCC keeps a float
 * comparison (which may trap) as a branch and then does not vectorize.
 *
 * With u = |x|, the upper tail is P(Z > u) = exp(-u^2 / 2) * g(u). g is
 * t * P(t) with t = 1 / (1 + 0.4 u) and P of degree 9, fitted by weighted
 * least squares to g over [0, 14]; in float it is within 3e-7 relative of
 * math.erfc (checked in numpy). Rounding u * u to float adds up to
 * u^2 * 6e-8 relative error where the tail is tiny.
 */
/* exp(a) for a in [-84.5, 0]: a = k ln 2 + r with |r| <= ln(2) / 2. */
KERNEL_BODY float
exp_nonpositive(float a)
{
	const float log2e = 1.44269504f;
	const float ln2_hi = 0.693145752f;	/* ln 2 with its low 12 bits cleared */
	const float ln2_lo = 1.42860677e-06f;
	const float round_magic = 12582912.0f;	/* 1.5 * 2^23: adding it rounds */
	float		k = (a * log2e + round_magic) - round_magic;
	float		r = (a - k * ln2_hi) - k * ln2_lo;
	float		p;

	/* Taylor series of degree 7: the remainder is below 1e-8 relative. */
	p = 1.0f / 5040.0f;
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	return p * tst_bits_float((uint32_t) ((int32_t) k + 127) << 23);
}

KERNEL_BODY void
normal_cdf_pdf(float x, float *cdf, float *pdf)
{
	const uint32_t u_max = 0x41500000u;	/* 13.0f */
	uint32_t	x_bits = tst_float_bits(x);
	uint32_t	u_bits = x_bits & 0x7fffffffu;
	float		u = tst_bits_float(u_bits);

	/*
	 * Non-negative floats order as their bit patterns, NaN above all. Past
	 * 13 the tail is below 1e-38, so the clamp changes nothing visible.
	 */
	float		uc = tst_bits_float(u_bits < u_max ? u_bits : u_max);
	float		e = exp_nonpositive(-0.5f * uc * uc);
	float		t = 1.0f / (1.0f + 0.4f * u);
	float		g;
	float		tail;
	uint32_t	negative;

	g = 3.272293429e-02f;
	g = g * t - 1.794334871e-01f;
	g = g * t + 3.880824445e-01f;
	g = g * t - 3.811552230e-01f;
	g = g * t + 1.248719349e-01f;
	g = g * t - 2.941193239e-02f;
	g = g * t + 9.210655106e-02f;
	g = g * t + 1.330002561e-01f;
	g = g * t + 1.596411914e-01f;
	g = g * t + 1.595753387e-01f;
	tail = e * (g * t);

	/* All bits set when x is negative: cdf = tail there, 1 - tail elsewhere. */
	negative = (uint32_t) 0 - (x_bits >> 31);
	*cdf = tst_bits_float((tst_float_bits(tail) & negative) |
						  (tst_float_bits(1.0f - tail) & ~negative));
	*pdf = 0.398942280f * e;	/* 1 / sqrt(2 pi) */
}

KERNEL_BODY float
gelu_value(float x)
{
	float		cdf;
	float		pdf;

	normal_cdf_pdf(x, &cdf, &pdf);
	return x * cdf;
}

KERNEL_BODY float
gelu_derivative(float x)
{
	float		cdf;
	float		pdf;

	normal_cdf_pdf(x, &cdf, &pdf);
	return cdf + x * pdf;
}

/* out (n) = GELU(inp), in blocks of LANES that -O2 vectorizes. */
KERNEL_BODY void
gelu_forward_body(float *restrict out, const float *restrict inp, size_t n)
{
	size_t		i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			out[i + l] = gelu_value(inp[i + l]);
	for (; i < n; i++)
		out[i] = gelu_value(inp[i]);
}

/* dinp (n) += dout * GELU'(inp). */
KERNEL_BODY void
gelu_backward_body(float *restrict dinp, const float *restrict inp,
				   const float *restrict dout, size_t n)
{
	size_t		i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int l = 0; l < LANES; l++)
			dinp[i + l] += dout[i + l] * gelu_derivative(inp[i + l]);
	for (; i < n; i++)
		dinp[i] += dout[i] * gelu_derivative(inp[i]);
}

DISPATCH(gelu_forward, (float *out, const float *inp, size_t n), (out, inp, n))
DISPATCH(gelu_backward, (float *dinp, const float *inp, const float *dout, size_t n),
		 (dinp, inp, dout, n))

/*
 * out (R, C) = LayerNorm(inp) * weight + bias; see kernels.h. Two passes per
 * row: the mean first, then squared deviations from it.
 */
KERNEL_BODY void
layernorm_forward_body(float *restrict out, float *restrict mean, float *restrict rstd,
					   const float *restrict inp, const float *restrict weight,
					   const float *restrict bias, int rows, int C)
{
	for (int r = 0; r < rows; r++)
	{
		const float *restrict x = inp + (size_t) r * C;
		float	   *restrict y = out + (size_t) r * C;
		float		m = sum_lanes(x, C) / (float) C;
		float		v = sq_dev_lanes(x, m, C) / (float) C;
		float		s = 1.0f / sqrtf(v + LAYERNORM_EPS);

		for (int c = 0; c < C; c++)
			y[c] = (x[c] - m) * s * weight[c] + bias[c];
		mean[r] = m;
		rstd[r] = s;
	}
}

/* Parameter gradients of layer norm: column sums over rows, in double like sum_rows. */
KERNEL_BODY void
layernorm_param_grads_body(float *restrict dweight, float *restrict dbias,
						   const float *restrict dout, const float *restrict inp,
						   const float *restrict mean, const float *restrict rstd,
						   int rows, int C)
{
	double		dw_acc[REDUCE_BLOCK];
	double		db_acc[REDUCE_BLOCK];

	for (int c0 = 0; c0 < C; c0 += REDUCE_BLOCK)
	{
		int			width = C - c0 < REDUCE_BLOCK ? C - c0 : REDUCE_BLOCK;

		for (int c = 0; c < width; c++)
		{
			dw_acc[c] = 0.0;
			db_acc[c] = 0.0;
		}
		for (int r = 0; r < rows; r++)
		{
			const float *restrict x = inp + (size_t) r * C + c0;
			const float *restrict g = dout + (size_t) r * C + c0;
			float		m = mean[r];
			float		s = rstd[r];

			for (int c = 0; c < width; c++)
			{
				db_acc[c] += g[c];
				dw_acc[c] += g[c] * ((x[c] - m) * s);
			}
		}
		for (int c = 0; c < width; c++)
		{
			dweight[c0 + c] += (float) dw_acc[c];
			dbias[c0 + c] += (float) db_acc[c];
		}
	}
}

/* Input gradient of layer norm, row by row; scratch holds dout * weight of a block. */
KERNEL_BODY void
layernorm_input_grads_body(float *restrict dinp, const float *restrict dout,
						   const float *restrict inp, const float *restrict weight,
						   const float *restrict mean, const float *restrict rstd,
						   int rows, int C)
{
	float		scratch[REDUCE_BLOCK];

	for (int r = 0; r < rows; r++)
	{
		const float *restrict x = inp + (size_t) r * C;
		const float *restrict g = dout + (size_t) r * C;
		float	   *restrict dx = dinp + (size_t) r * C;
		float		m = mean[r];
		float		s = rstd[r];
		float		g_mean = 0.0f;	/* mean of dout * weight */
		float		gx_mean = 0.0f; /* mean of dout * weight * xhat */

		for (int c0 = 0; c0 < C; c0 += REDUCE_BLOCK)
		{
			int			width = C - c0 < REDUCE_BLOCK ? C - c0 : REDUCE_BLOCK;
			float		xhat[REDUCE_BLOCK];

			for (int c = 0; c < width; c++)
			{
				scratch[c] = g[c0 + c] * weight[c0 + c];
				xhat[c] = (x[c0 + c] - m) * s;
			}
			g_mean += sum_lanes(scratch, width);
			gx_mean += dot_lanes(scratch, xhat, width);
		}
		g_mean /= (float) C;
		gx_mean /= (float) C;
		for (int c = 0; c < C; c++)
		{
			float		xhat = (x[c] - m) * s;

			dx[c] += s * (g[c] * weight[c] - g_mean - xhat * gx_mean);
		}
	}
}

/*
 * One query row of attention: scores against its keys into p (len), their
 * softmax, and the weighted sum of the values into o (DH). Key and value rows
 * of the head start at k_base and v_base, with a row stride of row3.
 */
KERNEL_BODY void
attention_row(float *restrict o, float *restrict p, const float *restrict q,
			  const float *restrict k_base, const float *restrict v_base,
			  const int32_t *keys, int64_t len, size_t row3, float scale, int DH)
{
	float		max = -INFINITY;
	float		sum = 0.0f;
	float		acc[MAX_FIXED_DH];

	for (int64_t j = 0; j < len; j++)
	{
		p[j] = dot_lanes(q, k_base + keys[j] * row3, DH) * scale;
		if (p[j] > max)
			max = p[j];
	}
	/* Subtract the row maximum so that expf cannot overflow. */
	for (int64_t j = 0; j < len; j++)
	{
		p[j] = expf(p[j] - max);
		sum += p[j];
	}
	for (int64_t j = 0; j < len; j++)
		p[j] /= sum;

	if (DH > MAX_FIXED_DH)
	{
		for (int d = 0; d < DH; d++)
			o[d] = 0.0f;
		for (int64_t j = 0; j < len; j++)
			axpy(o, p[j], v_base + keys[j] * row3, DH);
		return;
	}
	/* A small head accumulates in a local array the compiler keeps in registers. */
	for (int d = 0; d < DH; d++)
		acc[d] = 0.0f;
	for (int64_t j = 0; j < len; j++)
		axpy(acc, p[j], v_base + keys[j] * row3, DH);
	for (int d = 0; d < DH; d++)
		o[d] = acc[d];
}

/*
 * Sparse causal attention; see kernels.h. Key and value rows of a head are
 * read in place from qkv. The common head sizes get their own inlined copy
 * of the row loop, so that every inner loop has a constant length.
 */
KERNEL_BODY void
attention_forward_body(float *restrict out, float *restrict probs, const float *restrict qkv,
					   const TstPattern *pattern, int B, int N, int D, int NH)
{
	const int	DH = D / NH;
	const size_t row3 = (size_t) 3 * D;
	const float scale = 1.0f / sqrtf((float) DH);
	const int64_t *rowptr = pattern->rowptr;
	const int32_t *cols = pattern->cols;

	for (int b = 0; b < B; b++)
	{
		const float *base = qkv + (size_t) b * N * row3;

		for (int h = 0; h < NH; h++)
		{
			float	   *p_head = probs + ((size_t) b * NH + h) * pattern->nnz;
			const float *k_base = base + D + (size_t) h * DH;
			const float *v_base = base + 2 * (size_t) D + (size_t) h * DH;

			for (int i = 0; i < N; i++)
			{
				const float *q = base + i * row3 + (size_t) h * DH;
				float	   *p = p_head + rowptr[i];
				int64_t		len = rowptr[i + 1] - rowptr[i];
				const int32_t *keys = cols + rowptr[i];
				float	   *o = out + ((size_t) b * N + i) * D + (size_t) h * DH;

				if (DH == 16)
					attention_row(o, p, q, k_base, v_base, keys, len, row3, scale, 16);
				else if (DH == 8)
					attention_row(o, p, q, k_base, v_base, keys, len, row3, scale, 8);
				else if (DH == 32)
					attention_row(o, p, q, k_base, v_base, keys, len, row3, scale, 32);
				else
					attention_row(o, p, q, k_base, v_base, keys, len, row3, scale, DH);
			}
		}
	}
}

/*
 * Gradients of one query row i: dq (DH) of the row, and dk and dv of each
 * of its keys, from the output gradient g (DH) and the probabilities p (len).
 */
KERNEL_BODY void
attention_row_backward(float *restrict dq, const float *restrict q, const float *restrict g,
					   const float *restrict p, const float *base, float *dbase,
					   const int32_t *keys, int64_t len, size_t row3, size_t D,
					   float scale, int DH)
{
	float		pg_sum = 0.0f;
	float		gv[GV_CACHE];	/* g . v_c of the first GV_CACHE keys */

	/*
	 * First pass: dv_c += p_c g and the softmax term sum_c p_c (g . v_c). The
	 * second pass reuses g . v_c from gv, or recomputes it past GV_CACHE keys.
	 */
	for (int64_t j = 0; j < len; j++)
	{
		const float *v = base + keys[j] * row3 + 2 * D;
		float	   *dv = dbase + keys[j] * row3 + 2 * D;
		float		g_dot_v = dot_lanes(g, v, DH);

		if (j < GV_CACHE)
			gv[j] = g_dot_v;
		pg_sum += p[j] * g_dot_v;
		axpy(dv, p[j], g, DH);
	}
	for (int64_t j = 0; j < len; j++)
	{
		const float *k = base + keys[j] * row3 + D;
		float	   *dk = dbase + keys[j] * row3 + D;
		float		g_dot_v = j < GV_CACHE ? gv[j] : dot_lanes(g, base + keys[j] * row3 + 2 * D, DH);
		float		ds = p[j] * (g_dot_v - pg_sum) * scale;

		axpy(dq, ds, k, DH);
		axpy(dk, ds, q, DH);
	}
}

KERNEL_BODY void
attention_backward_body(float *restrict dqkv, const float *restrict dout,
						const float *restrict qkv, const float *restrict probs,
						const TstPattern *pattern, int B, int N, int D, int NH)
{
	const int	DH = D / NH;
	const size_t row3 = (size_t) 3 * D;
	const float scale = 1.0f / sqrtf((float) DH);
	const int64_t *rowptr = pattern->rowptr;
	const int32_t *cols = pattern->cols;

	for (int b = 0; b < B; b++)
	{
		for (int h = 0; h < NH; h++)
		{
			const float *p_head = probs + ((size_t) b * NH + h) * pattern->nnz;
			size_t		off = (size_t) h * DH;
			const float *base = qkv + (size_t) b * N * row3 + off;
			float	   *dbase = dqkv + (size_t) b * N * row3 + off;

			for (int i = 0; i < N; i++)
			{
				const float *q = base + i * row3;
				float	   *dq = dbase + i * row3;
				const float *g = dout + ((size_t) b * N + i) * D + off;
				const float *p = p_head + rowptr[i];
				int64_t		len = rowptr[i + 1] - rowptr[i];
				const int32_t *keys = cols + rowptr[i];

				if (DH == 16)
					attention_row_backward(dq, q, g, p, base, dbase, keys, len, row3, D, scale, 16);
				else if (DH == 8)
					attention_row_backward(dq, q, g, p, base, dbase, keys, len, row3, D, scale, 8);
				else if (DH == 32)
					attention_row_backward(dq, q, g, p, base, dbase, keys, len, row3, D, scale, 32);
				else
					attention_row_backward(dq, q, g, p, base, dbase, keys, len, row3, D, scale, DH);
			}
		}
	}
}

/*
 * Serial versions of the kernels: each calls its body compiled for AVX2 and
 * FMA when the CPU has both, and the baseline build otherwise.
 */
DISPATCH(layernorm_forward,
		 (float *out, float *mean, float *rstd, const float *inp, const float *weight,
		  const float *bias, int rows, int C),
		 (out, mean, rstd, inp, weight, bias, rows, C))
DISPATCH(layernorm_param_grads,
		 (float *dweight, float *dbias, const float *dout, const float *inp,
		  const float *mean, const float *rstd, int rows, int C),
		 (dweight, dbias, dout, inp, mean, rstd, rows, C))
DISPATCH(layernorm_input_grads,
		 (float *dinp, const float *dout, const float *inp, const float *weight,
		  const float *mean, const float *rstd, int rows, int C),
		 (dinp, dout, inp, weight, mean, rstd, rows, C))
DISPATCH(attention_forward,
		 (float *out, float *probs, const float *qkv, const TstPattern *pattern,
		  int B, int N, int D, int NH),
		 (out, probs, qkv, pattern, B, N, D, NH))
DISPATCH(attention_backward,
		 (float *dqkv, const float *dout, const float *qkv, const float *probs,
		  const TstPattern *pattern, int B, int N, int D, int NH),
		 (dqkv, dout, qkv, probs, pattern, B, N, D, NH))

/*
 * Threads for the kernels that OpenBLAS does not run. A kernel splits its
 * independent rows (or windows, or elements) into one contiguous range per
 * thread, as many threads as OpenBLAS has been given, so tst.blas_threads
 * sets both. Each row is computed exactly as on one thread, so the results
 * do not depend on the thread count. Reductions across rows (bias and norm
 * gradients) stay on the calling thread for the same reason.
 */

/* Most threads a kernel starts. */
#define MAX_KERNEL_THREADS 64

/* Ranges smaller than this many work items (about 100 kFLOP) stay serial. */
#define MIN_RANGE_WORK 4096

typedef void (*RangeFn) (void *arg, int64_t begin, int64_t end);

typedef struct RangeTask
{
	RangeFn		fn;
	void	   *arg;
	int64_t		begin;
	int64_t		end;
} RangeTask;

static void *
run_range_task(void *arg)
{
	RangeTask  *task = arg;

	task->fn(task->arg, task->begin, task->end);
	return NULL;
}

/*
 * Call fn on [0, n) split into ranges, one per thread; work is the cost of
 * one item. Threads start with every signal blocked, so that the signal
 * handlers of the host process (a PostgreSQL backend) only run on its own
 * thread. A thread that cannot start leaves its range to the caller.
 */
static void
run_ranges(RangeFn fn, void *arg, int64_t n, int64_t work)
{
	int			threads = openblas_get_num_threads();
	pthread_t	ids[MAX_KERNEL_THREADS];
	RangeTask	tasks[MAX_KERNEL_THREADS];
	bool		started[MAX_KERNEL_THREADS];
	sigset_t	all;
	sigset_t	saved;

	if (threads > MAX_KERNEL_THREADS)
		threads = MAX_KERNEL_THREADS;
	if (threads > n)
		threads = (int) n;
	while (threads > 1 && n * work / threads < MIN_RANGE_WORK)
		threads--;
	if (threads <= 1)
	{
		fn(arg, 0, n);
		return;
	}

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	for (int t = 0; t < threads; t++)
	{
		tasks[t].fn = fn;
		tasks[t].arg = arg;
		tasks[t].begin = n * t / threads;
		tasks[t].end = n * (t + 1) / threads;
		started[t] = t > 0 && pthread_create(&ids[t], NULL, run_range_task, &tasks[t]) == 0;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);

	for (int t = 0; t < threads; t++)
		if (!started[t])
			run_range_task(&tasks[t]);
	for (int t = 1; t < threads; t++)
		if (started[t])
			pthread_join(ids[t], NULL);
}

/* Arguments of every threaded kernel; each uses the fields it needs. */
typedef struct KernelArgs
{
	float	   *out;
	float	   *out2;
	float	   *out3;
	const float *in;
	const float *in2;
	const float *in3;
	const float *in4;
	const TstPattern *pattern;
	int			N;
	int			D;
	int			NH;
} KernelArgs;

static void
layernorm_forward_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;
	size_t		off = (size_t) begin * a->D;

	layernorm_forward_serial(a->out + off, a->out2 + begin, a->out3 + begin, a->in + off,
							 a->in2, a->in3, (int) (end - begin), a->D);
}

void
layernorm_forward(float *out, float *mean, float *rstd,
				  const float *inp, const float *weight, const float *bias,
				  int rows, int C)
{
	KernelArgs	a = {.out = out, .out2 = mean, .out3 = rstd, .in = inp, .in2 = weight,
	.in3 = bias, .D = C};

	run_ranges(layernorm_forward_range, &a, rows, 8 * (int64_t) C);
}

static void
layernorm_input_grads_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;
	size_t		off = (size_t) begin * a->D;

	layernorm_input_grads_serial(a->out + off, a->in + off, a->in2 + off, a->in3,
								 a->in4 + begin, a->out2 + begin, (int) (end - begin), a->D);
}

void
layernorm_backward(float *dinp, float *dweight, float *dbias,
				   const float *dout, const float *inp, const float *weight,
				   const float *mean, const float *rstd, int rows, int C)
{
	/* rstd is only read; out2 is the one float * field left for it. */
	KernelArgs	a = {.out = dinp, .out2 = (float *) rstd, .in = dout, .in2 = inp,
	.in3 = weight, .in4 = mean, .D = C};

	layernorm_param_grads_serial(dweight, dbias, dout, inp, mean, rstd, rows, C);
	run_ranges(layernorm_input_grads_range, &a, rows, 10 * (int64_t) C);
}

static void
gelu_forward_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;

	gelu_forward_serial(a->out + begin, a->in + begin, (size_t) (end - begin));
}

void
gelu_forward(float *out, const float *inp, size_t n)
{
	KernelArgs	a = {.out = out, .in = inp};

	run_ranges(gelu_forward_range, &a, (int64_t) n, 20);
}

static void
gelu_backward_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;

	gelu_backward_serial(a->out + begin, a->in + begin, a->in2 + begin,
						 (size_t) (end - begin));
}

void
gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
	KernelArgs	a = {.out = dinp, .in = inp, .in2 = dout};

	run_ranges(gelu_backward_range, &a, (int64_t) n, 30);
}

/* Attention splits by window: the windows of a batch never share a key. */
static void
attention_forward_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;
	size_t		rows = (size_t) begin * a->N;

	attention_forward_serial(a->out + rows * a->D,
							 a->out2 + (size_t) begin * a->NH * a->pattern->nnz,
							 a->in + rows * 3 * a->D, a->pattern, (int) (end - begin),
							 a->N, a->D, a->NH);
}

void
attention_forward(float *out, float *probs, const float *qkv,
				  const TstPattern *pattern, int B, int N, int D, int NH)
{
	KernelArgs	a = {.out = out, .out2 = probs, .in = qkv, .pattern = pattern,
	.N = N, .D = D, .NH = NH};

	run_ranges(attention_forward_range, &a, B, 4 * pattern->nnz * (int64_t) D);
}

static void
attention_backward_range(void *arg, int64_t begin, int64_t end)
{
	KernelArgs *a = arg;
	size_t		rows = (size_t) begin * a->N;

	attention_backward_serial(a->out + rows * 3 * a->D, a->in + rows * a->D,
							  a->in2 + rows * 3 * a->D,
							  a->in3 + (size_t) begin * a->NH * a->pattern->nnz,
							  a->pattern, (int) (end - begin), a->N, a->D, a->NH);
}

void
attention_backward(float *dqkv, const float *dout, const float *qkv,
				   const float *probs, const TstPattern *pattern,
				   int B, int N, int D, int NH)
{
	KernelArgs	a = {.out = dqkv, .in = dout, .in2 = qkv, .in3 = probs,
	.pattern = pattern, .N = N, .D = D, .NH = NH};

	run_ranges(attention_backward_range, &a, B, 8 * pattern->nnz * (int64_t) D);
}

void
dropout_forward(float *out, float *mask, const float *inp, float p,
				size_t n, TstRng *rng)
{
	/* Drop when a 32-bit draw falls below p * 2^32; one draw gives two. */
	uint64_t	threshold = (uint64_t) ((double) p * 4294967296.0);
	float		keep = 1.0f / (1.0f - p);
	size_t		i = 0;

	while (i < n)
	{
		uint64_t	bits = tst_rng_next(rng);

		for (int half = 0; half < 2 && i < n; half++, i++)
		{
			uint64_t	draw = half == 0 ? (bits >> 32) : (bits & 0xffffffffu);

			mask[i] = draw < threshold ? 0.0f : keep;
			out[i] = inp[i] * mask[i];
		}
	}
}

void
dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dinp[i] += dout[i] * mask[i];
}

void
residual_forward(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

void
residual_backward(float *da, float *db, const float *dout, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		da[i] += dout[i];
		db[i] += dout[i];
	}
}

void
pinball_forward(float *loss, const float *pred, const float *target,
				const float *quantiles, int B, int H, int Q)
{
	double		acc = 0.0;

	for (int b = 0; b < B; b++)
	{
		for (int h = 0; h < H; h++)
		{
			float		t = target[(size_t) b * H + h];
			const float *y = pred + ((size_t) b * H + h) * Q;

			for (int q = 0; q < Q; q++)
			{
				double		u = (double) t - y[q];
				double		tau = quantiles[q];

				acc += u > 0.0 ? tau * u : (tau - 1.0) * u;
			}
		}
	}
	*loss = (float) (acc / ((double) B * H * Q));
}

void
pinball_backward(float *dpred, const float *pred, const float *target,
				 const float *quantiles, int B, int H, int Q)
{
	float		inv_count = (float) (1.0 / ((double) B * H * Q));

	for (int b = 0; b < B; b++)
	{
		for (int h = 0; h < H; h++)
		{
			float		t = target[(size_t) b * H + h];
			const float *y = pred + ((size_t) b * H + h) * Q;
			float	   *dy = dpred + ((size_t) b * H + h) * Q;

			for (int q = 0; q < Q; q++)
			{
				float		tau = quantiles[q];

				dy[q] += (t - y[q] > 0.0f ? -tau : 1.0f - tau) * inv_count;
			}
		}
	}
}
