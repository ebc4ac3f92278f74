/*
 * kernels.h
 *		Layer kernels of the tst engine, and helpers shared by src/core files.
 *
 * One function per layer and direction. Arguments come in the order outputs,
 * inputs, weights, sizes. Forward kernels overwrite their outputs; backward
 * kernels add into their gradient outputs, which the caller zeroes first.
 * Shapes use the size letters of tst_core.h. R is any number of rows, usually
 * B*N, and I and O are the input and output widths of a linear layer.
 * All tensors are contiguous and row-major. Kernels check nothing: the model
 * validates sizes before calling them.
 */
#ifndef TST_KERNELS_H
#define TST_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tst_core.h"

/* Helpers shared by the src/core files. */
void		tst_set_error(char *errmsg, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
void		tst_release(const TstAllocator *allocator, void *ptr);

/* The IEEE 754 bits of a float, through memcpy, which is alias-safe. */
static inline uint32_t
tst_float_bits(float value)
{
	uint32_t	bits;

	memcpy(&bits, &value, sizeof(bits));
	return bits;
}

/* The float whose IEEE 754 bits are bits. */
static inline float
tst_bits_float(uint32_t bits)
{
	float		value;

	memcpy(&value, &bits, sizeof(value));
	return value;
}

/* Number of (query, key) pairs of a pattern, without building it. */
int64_t		tst_pattern_count(TstAttentionKind kind, int32_t window, int32_t n_tokens);

/* out (R, O) = inp (R, I) @ weight (O, I)^T + bias (O); bias may be NULL. */
void		linear_forward(float *out, const float *inp, const float *weight,
						   const float *bias, int rows, int in, int out_dim);

/* The same product with plain loops, kept as a test oracle. */
void		linear_forward_naive(float *out, const float *inp, const float *weight,
								 const float *bias, int rows, int in, int out_dim);

/*
 * dinp (R, I) += dout (R, O) @ weight (O, I); dweight (O, I) += dout^T @ inp;
 * dbias (O) += column sums of dout. dinp and dbias may be NULL.
 */
void		linear_backward(float *dinp, float *dweight, float *dbias,
							const float *dout, const float *inp, const float *weight,
							int rows, int in, int out_dim);

/* patches (B, N, P) from x (B, L); token n starts at L - P - (N - 1 - n) * S. */
void		patches_forward(float *patches, const float *x,
							int B, int L, int N, int P, int S);

/* out (B, N, D) += pos (N, D) for every window. */
void		position_forward(float *out, const float *pos, int B, int N, int D);

/* dpos (N, D) += dout (B, N, D) summed over windows. */
void		position_backward(float *dpos, const float *dout, int B, int N, int D);

/*
 * out (R, C) = LayerNorm(inp (R, C)) * weight (C) + bias (C), eps 1e-5 and
 * population variance; saves mean (R) and rstd (R) = 1 / sqrt(var + eps).
 */
void		layernorm_forward(float *out, float *mean, float *rstd,
							  const float *inp, const float *weight, const float *bias,
							  int rows, int C);
void		layernorm_backward(float *dinp, float *dweight, float *dbias,
							   const float *dout, const float *inp, const float *weight,
							   const float *mean, const float *rstd, int rows, int C);

/* out (n) = 0.5 inp (1 + erf(inp / sqrt 2)), the exact GELU. */
void		gelu_forward(float *out, const float *inp, size_t n);
void		gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/*
 * Sparse causal multi-head attention. qkv (B, N, 3D) contains q, k, v in columns
 * [0, D), [D, 2D), [2D, 3D); out (B, N, D) gets the heads concatenated;
 * probs (B, NH, nnz) keeps the softmax over each pattern row for backward.
 */
void		attention_forward(float *out, float *probs, const float *qkv,
							  const TstPattern *pattern, int B, int N, int D, int NH);

/* dqkv (B, N, 3D) += gradients of q, k and v from dout (B, N, D). */
void		attention_backward(float *dqkv, const float *dout, const float *qkv,
							   const float *probs, const TstPattern *pattern,
							   int B, int N, int D, int NH);

/*
 * out (n) = inp * mask, with mask (n) set to 0 with probability p and to
 * 1 / (1 - p) otherwise. out may equal inp. Needs 0 <= p < 1.
 */
void		dropout_forward(float *out, float *mask, const float *inp, float p,
							size_t n, TstRng *rng);

/* dinp (n) += dout * mask. */
void		dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* out (n) = a + b. */
void		residual_forward(float *out, const float *a, const float *b, size_t n);

/* da (n) += dout; db (n) += dout. */
void		residual_backward(float *da, float *db, const float *dout, size_t n);

/*
 * loss = mean over (b, h, q) of the pinball loss of pred (B, H*Q) against
 * target (B, H) at levels quantiles (Q).
 */
void		pinball_forward(float *loss, const float *pred, const float *target,
							const float *quantiles, int B, int H, int Q);

/* dpred (B, H*Q) += d(loss)/d(pred). */
void		pinball_backward(float *dpred, const float *pred, const float *target,
							 const float *quantiles, int B, int H, int Q);

#endif							/* TST_KERNELS_H */
