/*
 * test_config.c
 *		Configuration defaults, field ranges and derived size limits.
 */
#include <string.h>

#include "harness.h"
#include "kernels.h"

static TstStatus last_status;
static char last_message[TST_ERRMSG_LEN];

/* Validate a change to the defaults and keep the status and message. */
#define VALIDATE_WITH(stmt) \
	do { \
		TstConfig c_; \
		tst_config_default(&c_); \
		{ TstConfig *c = &c_; stmt; } \
		last_message[0] = '\0'; \
		last_status = tst_config_validate(&c_, last_message); \
	} while (0)

TEST(defaults_are_valid)
{
	TstConfig	c;
	char		errmsg[TST_ERRMSG_LEN];

	tst_config_default(&c);
	CHECK(tst_config_validate(&c, errmsg) == TST_OK);
	CHECK(c.context == 96);
	CHECK(c.horizon == 24);
	CHECK(c.patch_len == 16);
	CHECK(c.patch_stride == 8);
	CHECK(c.d_model == 64);
	CHECK(c.n_heads == 4);
	CHECK(c.n_layers == 2);
	CHECK(c.d_ff == 128);
	CHECK(c.attention == TST_ATTENTION_LOCAL);
	CHECK(c.window == 8);
	CHECK(c.n_quantiles == 5);
	CHECK_CLOSE(c.dropout, 0.1, 1e-7);
	CHECK_CLOSE(c.quantiles[0], 0.025, 1e-7);
	CHECK_CLOSE(c.quantiles[4], 0.975, 1e-7);
	CHECK(tst_config_num_patches(&c) == 11);
}

TEST(num_patches_drops_oldest_steps)
{
	TstConfig	c;

	tst_config_default(&c);
	c.context = 10;
	c.patch_len = 4;
	c.patch_stride = 3;
	CHECK(tst_config_num_patches(&c) == 3);
	c.context = 11;
	CHECK(tst_config_num_patches(&c) == 3);
	c.patch_len = 1;
	c.patch_stride = 1;
	CHECK(tst_config_num_patches(&c) == 11);
	c.patch_len = 11;
	CHECK(tst_config_num_patches(&c) == 1);
}

TEST(d_model_multiple_of_heads)
{
	VALIDATE_WITH(c->d_model = 30);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strcmp(last_message, "d_model 30 is not a multiple of n_heads 4") == 0);
}

TEST(field_ranges_rejected)
{
	VALIDATE_WITH(c->context = 0);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "context 0") != NULL);

	VALIDATE_WITH(c->context = 100001);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->horizon = 0);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "horizon") != NULL);

	VALIDATE_WITH(c->horizon = 10001);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->patch_len = 97);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "patch_len 97") != NULL);

	VALIDATE_WITH(c->patch_stride = 17);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "patch_stride 17") != NULL);

	VALIDATE_WITH(c->patch_stride = 0);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->d_model = 4097);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->n_heads = 0);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH((c->d_model = 4, c->n_heads = 8));
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "n_heads 8") != NULL);

	VALIDATE_WITH(c->n_layers = 65);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->d_ff = 0);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->window = 0);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->n_quantiles = 0);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->n_quantiles = 33);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH(c->attention = (TstAttentionKind) 3);
	CHECK(last_status == TST_ERR_CONFIG);

	VALIDATE_WITH((c->context = 1, c->patch_len = 1, c->patch_stride = 1));
	CHECK(last_status == TST_OK);
}

TEST(dropout_rejects_nan_and_one)
{
	VALIDATE_WITH(c->dropout = NAN);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "dropout") != NULL);
	VALIDATE_WITH(c->dropout = 1.0f);
	CHECK(last_status == TST_ERR_CONFIG);
	VALIDATE_WITH(c->dropout = -0.1f);
	CHECK(last_status == TST_ERR_CONFIG);
	VALIDATE_WITH(c->dropout = 0.0f);
	CHECK(last_status == TST_OK);
	VALIDATE_WITH(c->dropout = 0.99f);
	CHECK(last_status == TST_OK);
}

TEST(quantiles_must_increase_in_unit_interval)
{
	VALIDATE_WITH(c->quantiles[2] = 0.05f);
	CHECK(last_status == TST_ERR_CONFIG);
	CHECK(strstr(last_message, "increasing") != NULL);
	VALIDATE_WITH(c->quantiles[3] = c->quantiles[2]);
	CHECK(last_status == TST_ERR_CONFIG);
	VALIDATE_WITH(c->quantiles[0] = 0.0f);
	CHECK(last_status == TST_ERR_CONFIG);
	VALIDATE_WITH(c->quantiles[4] = 1.0f);
	CHECK(last_status == TST_ERR_CONFIG);
	VALIDATE_WITH(c->quantiles[1] = NAN);
	CHECK(last_status == TST_ERR_CONFIG);
	/* Only the first n_quantiles levels count. */
	VALIDATE_WITH((c->n_quantiles = 1, c->quantiles[0] = 0.5f));
	CHECK(last_status == TST_OK);
}

TEST(oversized_tensors_rejected)
{
	/* Every size field at its maximum: the head alone has 2e13 values. */
	VALIDATE_WITH((c->context = 100000, c->horizon = 10000, c->patch_len = 1,
				   c->patch_stride = 1, c->d_model = 4096, c->n_heads = 1,
				   c->n_layers = 64, c->d_ff = 16384, c->window = 100000));
	CHECK(last_status == TST_ERR_TOO_LARGE);
	CHECK(strstr(last_message, "1 GiB") != NULL);
	printf("    message: %s\n", last_message);

	/* N = 1000, D = 512, H*Q = 1000: head.weight has 5.1e8 values. */
	VALIDATE_WITH((c->context = 1000, c->patch_len = 1, c->patch_stride = 1,
				   c->d_model = 512, c->horizon = 200, c->window = 4));
	CHECK(last_status == TST_ERR_TOO_LARGE);
	CHECK(strstr(last_message, "head.weight") != NULL);

	/* Dense attention over 100000 tokens: 5e9 pattern entries. */
	VALIDATE_WITH((c->context = 100000, c->patch_len = 1, c->patch_stride = 1,
				   c->d_model = 4, c->horizon = 1, c->n_quantiles = 1,
				   c->quantiles[0] = 0.5f, c->attention = TST_ATTENTION_DENSE));
	CHECK(last_status == TST_ERR_TOO_LARGE);
	CHECK(strstr(last_message, "attention") != NULL);

	/* The same length with local attention fits. */
	VALIDATE_WITH((c->context = 100000, c->patch_len = 1, c->patch_stride = 1,
				   c->d_model = 4, c->horizon = 1, c->n_quantiles = 1,
				   c->quantiles[0] = 0.5f, c->attention = TST_ATTENTION_LOCAL));
	CHECK(last_status == TST_OK);

	/* Activations of one window too large: 64 layers of (N, F) with N = 100000. */
	VALIDATE_WITH((c->context = 100000, c->patch_len = 1, c->patch_stride = 1,
				   c->d_model = 4, c->d_ff = 1024, c->n_layers = 64, c->horizon = 1,
				   c->n_quantiles = 1, c->quantiles[0] = 0.5f));
	CHECK(last_status == TST_ERR_TOO_LARGE);
}

TEST(validate_null_config)
{
	char		errmsg[TST_ERRMSG_LEN];

	CHECK(tst_config_validate(NULL, errmsg) == TST_ERR_ARGUMENT);
	/* A NULL message buffer is allowed. */
	{
		TstConfig	c;

		tst_config_default(&c);
		c.d_model = 30;
		CHECK(tst_config_validate(&c, NULL) == TST_ERR_CONFIG);
	}
}

int
main(void)
{
	RUN(defaults_are_valid);
	RUN(num_patches_drops_oldest_steps);
	RUN(d_model_multiple_of_heads);
	RUN(field_ranges_rejected);
	RUN(dropout_rejects_nan_and_one);
	RUN(quantiles_must_increase_in_unit_interval);
	RUN(oversized_tensors_rejected);
	RUN(validate_null_config);
	return test_summary();
}
