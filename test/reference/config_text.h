/*
 * config_text.h
 *		Set one model configuration field from a "key value" line of the
 *		text files that the Python side writes for parity_driver.c and
 *		bench/engine_bench.c.
 */
#ifndef TST_CONFIG_TEXT_H
#define TST_CONFIG_TEXT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tst_core.h"

typedef enum ConfigTextResult
{
	CONFIG_TEXT_SET,			/* key is a TstConfig field and was set */
	CONFIG_TEXT_OTHER_KEY,		/* key is not a TstConfig field */
	CONFIG_TEXT_INVALID			/* key is a field, but value is invalid */
} ConfigTextResult;

/*
 * Set the TstConfig field named key from value: an integer, a float
 * (dropout), an attention kind name, or space-separated quantile levels.
 */
static inline ConfigTextResult
config_text_set(TstConfig *config, const char *key, const char *value)
{
	static const struct
	{
		const char *name;
		size_t		offset;
	}			int_fields[] = {
		{"context", offsetof(TstConfig, context)},
		{"horizon", offsetof(TstConfig, horizon)},
		{"patch_len", offsetof(TstConfig, patch_len)},
		{"patch_stride", offsetof(TstConfig, patch_stride)},
		{"d_model", offsetof(TstConfig, d_model)},
		{"n_heads", offsetof(TstConfig, n_heads)},
		{"n_layers", offsetof(TstConfig, n_layers)},
		{"d_ff", offsetof(TstConfig, d_ff)},
		{"window", offsetof(TstConfig, window)},
	};

	for (size_t i = 0; i < sizeof(int_fields) / sizeof(int_fields[0]); i++)
	{
		if (strcmp(key, int_fields[i].name) == 0)
		{
			*(int32_t *) ((char *) config + int_fields[i].offset) = atoi(value);
			return CONFIG_TEXT_SET;
		}
	}

	if (strcmp(key, "dropout") == 0)
	{
		config->dropout = strtof(value, NULL);
		return CONFIG_TEXT_SET;
	}

	if (strcmp(key, "attention") == 0)
	{
		char		name[32];

		if (sscanf(value, "%31s", name) != 1 || !tst_attention_parse(name, &config->attention))
			return CONFIG_TEXT_INVALID;
		return CONFIG_TEXT_SET;
	}

	if (strcmp(key, "quantiles") == 0)
	{
		const char *p = value;
		char	   *end;

		config->n_quantiles = 0;
		while (config->n_quantiles < TST_MAX_QUANTILES)
		{
			double		q = strtod(p, &end);

			if (end == p)
				break;
			config->quantiles[config->n_quantiles++] = (float) q;
			p = end;
		}
		return CONFIG_TEXT_SET;
	}

	return CONFIG_TEXT_OTHER_KEY;
}

#endif							/* TST_CONFIG_TEXT_H */
