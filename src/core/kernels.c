/*
 * kernels.c
 *		Forward and backward kernels for every layer of the model.
 *
 * Linear layers run through OpenBLAS sgemm on (R, I) row blocks, so a batch
 * of B windows of N tokens is one call over B*N rows. The other kernels are
 * plain loops over contiguous rows that the compiler can vectorize.
 *
 * Attention only computes scores on the entries of a TstPattern: a query row
 * costs O(row length * DH), so local attention is O(N W) per head and never
 * builds a masked N x N matrix.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "kernels.h"

#define LAYERNORM_EPS 1e-5f

/* Columns per block of the double accumulators in the row reductions. */
#define REDUCE_BLOCK 256

/*
 * sums (C) += column sums of x (R, C), accumulated in double: a bias
 * gradient sums many rows that often cancel, and a float running sum would
 * leave rounding noise where the exact sum is zero.
 */
static void
sum_rows(float *sums, const float *x, int rows, int C)
{
	double		acc[REDUCE_BLOCK];

	for (int c0 = 0; c0 < C; c0 += REDUCE_BLOCK)
	{
		int			width = C - c0 < REDUCE_BLOCK ? C - c0 : REDUCE_BLOCK;

		for (int c = 0; c < width; c++)
			acc[c] = 0.0;
		for (int r = 0; r < rows; r++)
		{
			const float *row = x + (size_t) r * C + c0;

			for (int c = 0; c < width; c++)
				acc[c] += row[c];
		}
		for (int c = 0; c < width; c++)
			sums[c0 + c] += (float) acc[c];
	}
}

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
		sum_rows(dbias, dout, rows, out_dim);
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

void
layernorm_forward(float *out, float *mean, float *rstd,
				  const float *inp, const float *weight, const float *bias,
				  int rows, int C)
{
	for (int r = 0; r < rows; r++)
	{
		const float *x = inp + (size_t) r * C;
		float	   *y = out + (size_t) r * C;
		float		m = 0.0f;
		float		v = 0.0f;
		float		s;

		/* Two passes: the mean first, then squared deviations from it. */
		for (int c = 0; c < C; c++)
			m += x[c];
		m /= (float) C;
		for (int c = 0; c < C; c++)
		{
			float		d = x[c] - m;

			v += d * d;
		}
		v /= (float) C;
		s = 1.0f / sqrtf(v + LAYERNORM_EPS);
		for (int c = 0; c < C; c++)
			y[c] = (x[c] - m) * s * weight[c] + bias[c];
		mean[r] = m;
		rstd[r] = s;
	}
}

void
layernorm_backward(float *dinp, float *dweight, float *dbias,
				   const float *dout, const float *inp, const float *weight,
				   const float *mean, const float *rstd, int rows, int C)
{
	double		dw_acc[REDUCE_BLOCK];
	double		db_acc[REDUCE_BLOCK];

	/* Parameter gradients: column sums over rows, in double like sum_rows. */
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
			const float *x = inp + (size_t) r * C + c0;
			const float *g = dout + (size_t) r * C + c0;
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

	/* Input gradient, row by row. */
	for (int r = 0; r < rows; r++)
	{
		const float *x = inp + (size_t) r * C;
		const float *g = dout + (size_t) r * C;
		float	   *dx = dinp + (size_t) r * C;
		float		m = mean[r];
		float		s = rstd[r];
		float		g_mean = 0.0f;	/* mean of dout * weight */
		float		gx_mean = 0.0f; /* mean of dout * weight * xhat */

		for (int c = 0; c < C; c++)
		{
			float		gw = g[c] * weight[c];

			g_mean += gw;
			gx_mean += gw * ((x[c] - m) * s);
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

void
gelu_forward(float *out, const float *inp, size_t n)
{
	const float inv_sqrt2 = 0.70710678118654752f;

	for (size_t i = 0; i < n; i++)
		out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * inv_sqrt2));
}

void
gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
	const float inv_sqrt2 = 0.70710678118654752f;
	const float inv_sqrt2pi = 0.39894228040143268f;

	for (size_t i = 0; i < n; i++)
	{
		float		x = inp[i];
		float		cdf = 0.5f * (1.0f + erff(x * inv_sqrt2));
		float		pdf = inv_sqrt2pi * expf(-0.5f * x * x);

		dinp[i] += dout[i] * (cdf + x * pdf);
	}
}

static inline float
dot(const float *a, const float *b, int n)
{
	float		acc = 0.0f;

	for (int i = 0; i < n; i++)
		acc += a[i] * b[i];
	return acc;
}

void
attention_forward(float *out, float *probs, const float *qkv,
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

			for (int i = 0; i < N; i++)
			{
				const float *q = base + i * row3 + (size_t) h * DH;
				float	   *p = p_head + rowptr[i];
				int64_t		len = rowptr[i + 1] - rowptr[i];
				const int32_t *keys = cols + rowptr[i];
				float	   *o = out + ((size_t) b * N + i) * D + (size_t) h * DH;
				float		max = -INFINITY;
				float		sum = 0.0f;

				for (int64_t j = 0; j < len; j++)
				{
					const float *k = base + keys[j] * row3 + D + (size_t) h * DH;

					p[j] = dot(q, k, DH) * scale;
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

				memset(o, 0, (size_t) DH * sizeof(float));
				for (int64_t j = 0; j < len; j++)
				{
					const float *v = base + keys[j] * row3 + 2 * (size_t) D + (size_t) h * DH;
					float		pj = p[j];

					for (int d = 0; d < DH; d++)
						o[d] += pj * v[d];
				}
			}
		}
	}
}

void
attention_backward(float *dqkv, const float *dout, const float *qkv,
				   const float *probs, const TstPattern *pattern,
				   int B, int N, int D, int NH)
{
	const int	DH = D / NH;
	const size_t row3 = (size_t) 3 * D;
	const float scale = 1.0f / sqrtf((float) DH);
	const int64_t *rowptr = pattern->rowptr;
	const int32_t *cols = pattern->cols;

	for (int b = 0; b < B; b++)
	{
		const float *base = qkv + (size_t) b * N * row3;
		float	   *dbase = dqkv + (size_t) b * N * row3;

		for (int h = 0; h < NH; h++)
		{
			const float *p_head = probs + ((size_t) b * NH + h) * pattern->nnz;
			size_t		off = (size_t) h * DH;

			for (int i = 0; i < N; i++)
			{
				const float *q = base + i * row3 + off;
				float	   *dq = dbase + i * row3 + off;
				const float *g = dout + ((size_t) b * N + i) * D + off;
				const float *p = p_head + rowptr[i];
				int64_t		len = rowptr[i + 1] - rowptr[i];
				const int32_t *keys = cols + rowptr[i];
				float		pg_sum = 0.0f;

				/*
				 * First pass: dv_c += p_c g and the softmax term
				 * sum_c p_c (g . v_c). The second pass recomputes g . v_c
				 * instead of keeping a row of scratch.
				 */
				for (int64_t j = 0; j < len; j++)
				{
					const float *v = base + keys[j] * row3 + 2 * (size_t) D + off;
					float	   *dv = dbase + keys[j] * row3 + 2 * (size_t) D + off;
					float		pj = p[j];

					pg_sum += pj * dot(g, v, DH);
					for (int d = 0; d < DH; d++)
						dv[d] += pj * g[d];
				}
				for (int64_t j = 0; j < len; j++)
				{
					const float *k = base + keys[j] * row3 + D + off;
					const float *v = base + keys[j] * row3 + 2 * (size_t) D + off;
					float	   *dk = dbase + keys[j] * row3 + D + off;
					float		ds = p[j] * (dot(g, v, DH) - pg_sum) * scale;

					for (int d = 0; d < DH; d++)
					{
						dq[d] += ds * k[d];
						dk[d] += ds * q[d];
					}
				}
			}
		}
	}
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
