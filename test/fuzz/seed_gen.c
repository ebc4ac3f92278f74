/*
 * seed_gen.c
 *		Write valid starting inputs for the fuzz targets into a directory:
 *		weights blobs of the fuzz_model_load configurations, the default
 *		configuration, and serialized aggregate states.
 *
 * The seeds are generated at build time, so they follow format changes.
 * Usage: seed_gen OUTPUT_DIR (subdirectories per target must exist).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tst_core.h"

static void
write_file(const char *dir, const char *target, const char *name,
		   const void *data, size_t size)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* The configurations of fuzz_model_load, in the same order. */
static void
model_seeds(const char *dir)
{
	for (int index = 0; index < 4; index++)
	{
		TstConfig	config;
		TstModel   *model;
		char		errmsg[TST_ERRMSG_LEN];
		char		name[32];
		size_t		size;
		uint8_t    *buf;

		tst_config_default(&config);
		config.context = 16;
		config.horizon = 4;
		config.patch_len = 4;
		config.patch_stride = 4;
		config.d_model = 8;
		config.n_heads = 2;
		config.n_layers = 1;
		config.d_ff = 8;
		config.window = 2;
		if (index == 1)
		{
			config.n_layers = 2;
			config.attention = TST_ATTENTION_LOGSPARSE;
		}
		else if (index == 2)
		{
			config.attention = TST_ATTENTION_DENSE;
			config.n_quantiles = 1;
			config.quantiles[0] = 0.5f;
		}
		else if (index == 3)
		{
			config.patch_stride = 2;
			config.d_model = 4;
			config.n_heads = 1;
		}
		if (tst_model_create(&config, &tst_malloc_allocator, &model, errmsg) != TST_OK)
		{
			fprintf(stderr, "seed_gen: %s\n", errmsg);
			exit(1);
		}
		tst_model_init(model, 7);
		size = tst_model_saved_size(model);
		buf = malloc(size + 1);
		buf[0] = (uint8_t) index;
		tst_model_save(model, buf + 1);
		snprintf(name, sizeof(name), "config%d.bin", index);
		write_file(dir, "fuzz_model_load", name, buf, size + 1);
		free(buf);
		tst_model_free(model);
	}
}

static void
config_seeds(const char *dir)
{
	TstConfig	config;
	uint8_t		buf[12 * 4 + TST_MAX_QUANTILES * 4];
	int32_t		fields[12];
	int32_t		attention;

	tst_config_default(&config);
	attention = (int32_t) config.attention;
	fields[0] = config.context;
	fields[1] = config.horizon;
	fields[2] = config.patch_len;
	fields[3] = config.patch_stride;
	fields[4] = config.d_model;
	fields[5] = config.n_heads;
	fields[6] = config.n_layers;
	fields[7] = config.d_ff;
	memcpy(&fields[8], &config.dropout, 4);
	fields[9] = attention;
	fields[10] = config.window;
	fields[11] = config.n_quantiles;
	memcpy(buf, fields, sizeof(fields));
	memcpy(buf + sizeof(fields), config.quantiles, sizeof(config.quantiles));
	write_file(dir, "fuzz_config", "default.bin", buf, sizeof(buf));
}

static uint8_t *
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
	return p + 4;
}

static void
state_seeds(const char *dir)
{
	uint8_t		buf[256];
	uint8_t    *p = buf;
	double		value = 1.5;
	uint64_t	bits;

	/* A forecast_agg state: model "m", horizon 3, two points. */
	p = put_be32(p, 3);
	p = put_be32(p, 1);
	*p++ = 'm';
	p = put_be32(p, 3);
	p = put_be32(p, 2);
	for (int i = 0; i < 2; i++)
	{
		memcpy(&bits, &value, 8);
		p = put_be32(p, 0);
		p = put_be32(p, (uint32_t) (3600000000u * (uint32_t) i));
		p = put_be32(p, (uint32_t) (bits >> 32));
		p = put_be32(p, (uint32_t) bits);
	}
	write_file(dir, "fuzz_state", "forecast_agg.bin", buf, (size_t) (p - buf));

	/* A series_agg state without points. */
	p = buf;
	p = put_be32(p, 0);
	p = put_be32(p, 0);
	p = put_be32(p, 0);
	write_file(dir, "fuzz_state", "empty.bin", buf, (size_t) (p - buf));
}

int
main(int argc, char **argv)
{
	if (argc != 2)
	{
		fprintf(stderr, "usage: seed_gen OUTPUT_DIR\n");
		return 2;
	}
	model_seeds(argv[1]);
	config_seeds(argv[1]);
	state_seeds(argv[1]);
	return 0;
}
