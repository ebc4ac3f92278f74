/*
 * test_format.c
 *		Tests of the weights blob: save, load and every rejection path.
 *
 * Every failing load must return TST_ERR_FORMAT with a message and leave the
 * target model's parameters exactly as they were.
 */
#include "harness.h"
#include "tst_core.h"

#include <stdlib.h>
#include <string.h>

/* Offsets into a blob of small_config(): header, then "patch.weight". */
#define OFFSET_VERSION 4
#define OFFSET_MARKER 8
#define OFFSET_COUNT 12
#define OFFSET_FIRST_RECORD 16
/* The calibration record of small_config(): name length, name, ndim, (H, Q). */
#define CALIBRATION_RECORD_BYTES (2 + 11 + 1 + 8 + 4 * 3 * 3)

/* A small model so that truncating the blob at every length stays fast. */
static TstConfig
small_config(void)
{
	TstConfig	config;

	tst_config_default(&config);
	config.context = 12;
	config.horizon = 3;
	config.patch_len = 4;
	config.patch_stride = 2;
	config.d_model = 4;
	config.n_heads = 2;
	config.n_layers = 1;
	config.d_ff = 6;
	config.window = 2;
	config.n_quantiles = 3;
	config.quantiles[0] = 0.1f;
	config.quantiles[1] = 0.5f;
	config.quantiles[2] = 0.9f;
	return config;
}

static TstModel *
make_model(const TstConfig *config, uint64_t seed)
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

static uint8_t *
save_blob(const TstModel *model, size_t *len)
{
	uint8_t    *blob;

	*len = tst_model_saved_size(model);
	blob = malloc(*len);
	if (blob != NULL)
		tst_model_save(model, blob);
	return blob;
}

/* Copy every parameter value, to check later that a load changed nothing. */
static float *
snapshot(TstModel *model)
{
	float	   *copy = malloc(sizeof(float) * (size_t) tst_model_num_params(model));
	float	   *p = copy;
	int32_t		i;

	if (copy == NULL)
		return NULL;
	for (i = 0; i < tst_model_num_tensors(model); i++)
	{
		TstTensor  *tensor = tst_model_tensor(model, i);

		memcpy(p, tensor->data, sizeof(float) * (size_t) tensor->size);
		p += tensor->size;
	}
	return copy;
}

static bool
matches_snapshot(TstModel *model, const float *copy)
{
	const float *p = copy;
	int32_t		i;

	for (i = 0; i < tst_model_num_tensors(model); i++)
	{
		TstTensor  *tensor = tst_model_tensor(model, i);

		if (memcmp(p, tensor->data, sizeof(float) * (size_t) tensor->size) != 0)
			return false;
		p += tensor->size;
	}
	return true;
}

static uint32_t
read_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static void
write_le32(uint8_t *p, uint32_t value)
{
	p[0] = (uint8_t) value;
	p[1] = (uint8_t) (value >> 8);
	p[2] = (uint8_t) (value >> 16);
	p[3] = (uint8_t) (value >> 24);
}

/* Offset of tensor index's record in a blob of model. */
static size_t
record_offset(TstModel *model, int32_t index)
{
	size_t		offset = OFFSET_FIRST_RECORD;
	int32_t		i;

	for (i = 0; i < index; i++)
	{
		TstTensor  *tensor = tst_model_tensor(model, i);

		offset += 2 + strlen(tensor->name) + 1 + 4 * (size_t) tensor->ndim +
			4 * (size_t) tensor->size;
	}
	return offset;
}

/* Offset of the first value of tensor index's record. */
static size_t
values_offset(TstModel *model, int32_t index)
{
	TstTensor  *tensor = tst_model_tensor(model, index);

	return record_offset(model, index) + 2 + strlen(tensor->name) + 1 +
		4 * (size_t) tensor->ndim;
}

/*
 * Load a blob that must be rejected into a model initialized from another
 * seed, and check the status, that a message was written and that the
 * parameters did not change. Copies the blob into an exact-size buffer so that
 * a memory checker reports any read past len. Writes the message to errmsg.
 */
static void
expect_rejected(const TstConfig *config, const uint8_t *blob, size_t len,
				char *errmsg)
{
	TstModel   *target = make_model(config, 99);
	float	   *before;
	uint8_t    *exact = malloc(len > 0 ? len : 1);
	TstStatus	status;

	CHECK(target != NULL);
	CHECK(exact != NULL);
	if (target == NULL || exact == NULL)
	{
		tst_model_free(target);
		free(exact);
		return;
	}
	before = snapshot(target);
	memcpy(exact, blob, len);
	errmsg[0] = '\0';

	status = tst_model_load(target, exact, len, errmsg);
	CHECK(status == TST_ERR_FORMAT);
	CHECK(errmsg[0] != '\0');
	CHECK(matches_snapshot(target, before));

	free(before);
	free(exact);
	tst_model_free(target);
}

/* Like expect_rejected, and also check the exact message. */
static void
expect_message(const TstConfig *config, const uint8_t *blob, size_t len,
			   const char *expected)
{
	char		errmsg[TST_ERRMSG_LEN];

	expect_rejected(config, blob, len, errmsg);
	CHECK(strcmp(errmsg, expected) == 0);
	if (strcmp(errmsg, expected) != 0)
		printf("    message:  %.*s\n    expected: %.*s\n",
			   TST_ERRMSG_LEN, errmsg, TST_ERRMSG_LEN, expected);
}

TEST(round_trip_restores_every_value)
{
	TstConfig	config = small_config();
	TstModel   *source = make_model(&config, 1);
	TstModel   *target = make_model(&config, 2);
	char		errmsg[TST_ERRMSG_LEN] = "";
	uint8_t    *blob;
	size_t		len;
	float	   *expected;

	CHECK(source != NULL);
	CHECK(target != NULL);
	if (source == NULL || target == NULL)
		return;
	for (int32_t i = 0; i < config.horizon * config.n_quantiles; i++)
		tst_model_calibration(source)[i] = 0.25f * (float) (i - 4);
	blob = save_blob(source, &len);
	expected = snapshot(source);

	CHECK(tst_model_load(target, blob, len, errmsg) == TST_OK);
	CHECK(errmsg[0] == '\0');
	CHECK(matches_snapshot(target, expected));
	CHECK(memcmp(tst_model_calibration(target), tst_model_calibration(source),
				 sizeof(float) * (size_t) (config.horizon * config.n_quantiles)) == 0);

	free(expected);
	free(blob);
	tst_model_free(source);
	tst_model_free(target);
}

TEST(saved_size_matches_layout)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	size_t		len;
	size_t		expected = OFFSET_FIRST_RECORD;
	uint8_t    *blob;
	int32_t		i;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	for (i = 0; i < tst_model_num_tensors(model); i++)
	{
		TstTensor  *tensor = tst_model_tensor(model, i);

		expected += 2 + strlen(tensor->name) + 1 + 4 * (size_t) tensor->ndim +
			4 * (size_t) tensor->size;
	}
	expected += 2 + strlen("calibration") + 1 + 8 +
		4 * (size_t) (config.horizon * config.n_quantiles);
	blob = save_blob(model, &len);
	CHECK(len == expected);
	CHECK(record_offset(model, tst_model_num_tensors(model)) + CALIBRATION_RECORD_BYTES == len);

	free(blob);
	tst_model_free(model);
}

TEST(header_and_first_record_bytes)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	TstTensor  *first;
	uint8_t    *blob;
	size_t		len;
	const uint8_t *record;
	float		value;
	uint32_t	bits;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);
	first = tst_model_tensor(model, 0);

	CHECK(memcmp(blob, "TSTW", 4) == 0);
	CHECK(read_le32(blob + OFFSET_VERSION) == 2);
	CHECK(blob[OFFSET_MARKER] == 0x04);
	CHECK(blob[OFFSET_MARKER + 3] == 0x01);
	CHECK(read_le32(blob + OFFSET_COUNT) == (uint32_t) tst_model_num_tensors(model));

	/* "patch.weight": uint16 name length 12, the name, ndim 2, (D, P). */
	record = blob + OFFSET_FIRST_RECORD;
	CHECK(record[0] == 12);
	CHECK(record[1] == 0);
	CHECK(memcmp(record + 2, "patch.weight", 12) == 0);
	CHECK(record[14] == 2);
	CHECK(read_le32(record + 15) == (uint32_t) config.d_model);
	CHECK(read_le32(record + 19) == (uint32_t) config.patch_len);
	bits = read_le32(record + 23);
	memcpy(&value, &bits, sizeof(value));
	CHECK(value == first->data[0]);

	free(blob);
	tst_model_free(model);
}

TEST(truncated_blob_rejected_at_every_length)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	char		errmsg[TST_ERRMSG_LEN];
	uint8_t    *blob;
	size_t		len;
	size_t		cut;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);
	for (cut = 0; cut < len; cut++)
		expect_rejected(&config, blob, cut, errmsg);

	expect_message(&config, blob, 10,
				   "weights blob is 10 bytes, shorter than the 16-byte header");
	expect_message(&config, blob, len - 1,
				   "weights blob ends at byte 2115, inside the values of tensor 19 (\"calibration\")");
	expect_message(&config, blob, len - CALIBRATION_RECORD_BYTES - 1,
				   "weights blob ends at byte 2057, inside the values of tensor 18 (\"head.bias\")");
	expect_message(&config, blob, len - CALIBRATION_RECORD_BYTES,
				   "weights blob ends at byte 2058, inside the name length of tensor 19 (\"calibration\")");

	free(blob);
	tst_model_free(model);
}

TEST(empty_blob_rejected)
{
	TstConfig	config = small_config();

	expect_message(&config, (const uint8_t *) "", 0,
				   "weights blob is 0 bytes, shorter than the 16-byte header");
}

TEST(flipped_header_byte_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	char		errmsg[TST_ERRMSG_LEN];
	uint8_t    *blob;
	size_t		len;
	size_t		i;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);
	for (i = 0; i < OFFSET_FIRST_RECORD; i++)
	{
		blob[i] ^= 0xff;
		expect_rejected(&config, blob, len, errmsg);
		if (i < OFFSET_VERSION)
			CHECK(strstr(errmsg, "invalid magic bytes") != NULL);
		else if (i < OFFSET_MARKER)
			CHECK(strstr(errmsg, "unsupported weights format version") != NULL);
		else if (i < OFFSET_COUNT)
			CHECK(strstr(errmsg, "invalid byte-order marker") != NULL);
		else
			CHECK(strstr(errmsg, "tensors, expected 19") != NULL);
		blob[i] ^= 0xff;
	}

	blob[0] = 'X';
	expect_message(&config, blob, len,
				   "invalid magic bytes 58 53 54 57, expected \"TSTW\"");

	free(blob);
	tst_model_free(model);
}

TEST(other_version_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	uint8_t    *blob;
	size_t		len;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);

	write_le32(blob + OFFSET_VERSION, 3);
	expect_message(&config, blob, len,
				   "unsupported weights format version 3, expected version 1 to 2");
	write_le32(blob + OFFSET_VERSION, 0);
	expect_message(&config, blob, len,
				   "unsupported weights format version 0, expected version 1 to 2");

	/* Version 1 has no calibration record, so the record is trailing bytes. */
	write_le32(blob + OFFSET_VERSION, 1);
	expect_message(&config, blob, len,
				   "weights blob has 58 trailing bytes after the last record, expected a length of 2058");

	free(blob);
	tst_model_free(model);
}

TEST(big_endian_marker_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	uint8_t    *blob;
	size_t		len;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);

	write_le32(blob + OFFSET_MARKER, 0x04030201);
	expect_message(&config, blob, len,
				   "weights blob was written big-endian (byte-order marker 0x04030201), only little-endian is supported");

	free(blob);
	tst_model_free(model);
}

TEST(wrong_tensor_count_rejected)
{
	TstConfig	config = small_config();
	TstConfig	deeper = small_config();
	TstModel   *model;
	uint8_t    *blob;
	size_t		len;

	/* A blob of a two-block model has 12 more tensors than a one-block one. */
	deeper.n_layers = 2;
	model = make_model(&deeper, 1);
	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);
	expect_message(&config, blob, len,
				   "weights blob has 31 tensors, expected 19");

	free(blob);
	tst_model_free(model);
}

TEST(nan_or_infinity_value_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	uint8_t    *blob;
	size_t		len;
	size_t		at;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);

	/* Element 5 of tensor 2 ("pos"), a quiet NaN, after valid earlier tensors. */
	at = values_offset(model, 2) + 4 * 5;
	write_le32(blob + at, 0x7fc00000);
	expect_message(&config, blob, len,
				   "tensor 2 (\"pos\") element 5 is nan, expected a finite value");

	write_le32(blob + at, 0xff800000);
	expect_message(&config, blob, len,
				   "tensor 2 (\"pos\") element 5 is infinite, expected a finite value");

	/* A NaN in the last parameter, and in the last calibration offset. */
	write_le32(blob + at, 0);
	write_le32(blob + len - CALIBRATION_RECORD_BYTES - 4, 0x7f800001);
	expect_message(&config, blob, len,
				   "tensor 18 (\"head.bias\") element 8 is nan, expected a finite value");
	write_le32(blob + len - CALIBRATION_RECORD_BYTES - 4, 0);
	write_le32(blob + len - 4, 0x7f800001);
	expect_message(&config, blob, len,
				   "tensor 19 (\"calibration\") element 8 is nan, expected a finite value");

	free(blob);
	tst_model_free(model);
}

TEST(wrong_tensor_name_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	uint8_t    *blob;
	size_t		len;
	size_t		at;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);

	/* Rename tensor 1 from "patch.bias" to "patch.biaz". */
	at = record_offset(model, 1) + 2 + 9;
	blob[at] = 'z';
	expect_message(&config, blob, len,
				   "tensor 1 is named \"patch.biaz\", expected \"patch.bias\"");

	/* Bytes that cannot be printed are shown as '?'. */
	blob[at] = 0x01;
	expect_message(&config, blob, len,
				   "tensor 1 is named \"patch.bia?\", expected \"patch.bias\"");

	/* A longer name length reads past the name into the record. */
	blob[at] = 's';
	blob[record_offset(model, 1)] = 11;
	expect_rejected(&config, blob, len, (char[TST_ERRMSG_LEN]) {0});

	/* A name length beyond the end of the blob is a truncation. */
	blob[record_offset(model, 1)] = 0xff;
	blob[record_offset(model, 1) + 1] = 0xff;
	expect_message(&config, blob, len,
				   "weights blob ends at byte 2116, inside the name of tensor 1 (\"patch.bias\")");

	free(blob);
	tst_model_free(model);
}

TEST(wrong_tensor_shape_rejected)
{
	TstConfig	config = small_config();
	TstConfig	wider = small_config();
	TstModel   *model = make_model(&config, 1);
	TstModel   *wide_model;
	uint8_t    *blob;
	size_t		len;
	size_t		at;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);

	/* Claim (5, 3) for "pos", which is (N, D) = (5, 4). */
	at = record_offset(model, 2) + 2 + 3 + 1;
	write_le32(blob + at + 4, 3);
	expect_message(&config, blob, len,
				   "tensor 2 (\"pos\") has shape (5, 3), expected (5, 4)");
	write_le32(blob + at + 4, 4);

	/* Claim ndim 2, then shape (5), for "patch.bias", which is (D) = (4). */
	at = record_offset(model, 1) + 2 + 10;
	blob[at] = 2;
	expect_message(&config, blob, len,
				   "tensor 1 (\"patch.bias\") has ndim 2, expected 1");
	blob[at] = 1;
	write_le32(blob + at + 1, 5);
	expect_message(&config, blob, len,
				   "tensor 1 (\"patch.bias\") has shape (5), expected (4)");

	/* A blob of a model with another d_model has the same tensor count. */
	wider.d_model = 8;
	wide_model = make_model(&wider, 1);
	CHECK(wide_model != NULL);
	if (wide_model != NULL)
	{
		uint8_t    *wide_blob;
		size_t		wide_len;

		wide_blob = save_blob(wide_model, &wide_len);
		expect_message(&config, wide_blob, wide_len,
					   "tensor 0 (\"patch.weight\") has shape (8, 4), expected (4, 4)");
		free(wide_blob);
		tst_model_free(wide_model);
	}

	free(blob);
	tst_model_free(model);
}

TEST(trailing_bytes_rejected)
{
	TstConfig	config = small_config();
	TstModel   *model = make_model(&config, 1);
	uint8_t    *blob;
	uint8_t    *longer;
	size_t		len;

	CHECK(model != NULL);
	if (model == NULL)
		return;
	blob = save_blob(model, &len);
	longer = calloc(len + 3, 1);
	CHECK(longer != NULL);
	if (longer != NULL)
	{
		memcpy(longer, blob, len);
		expect_message(&config, longer, len + 1,
					   "weights blob has 1 trailing bytes after the last record, expected a length of 2116");
		expect_message(&config, longer, len + 3,
					   "weights blob has 3 trailing bytes after the last record, expected a length of 2116");
	}

	free(longer);
	free(blob);
	tst_model_free(model);
}

/* A version 1 blob (no calibration record) loads and leaves every offset 0. */
TEST(version_1_blob_loads_uncalibrated)
{
	TstConfig	config = small_config();
	TstModel   *source = make_model(&config, 1);
	TstModel   *target = make_model(&config, 2);
	char		errmsg[TST_ERRMSG_LEN] = "";
	uint8_t    *blob;
	size_t		len;
	float	   *expected;
	int32_t		n = config.horizon * config.n_quantiles;

	CHECK(source != NULL);
	CHECK(target != NULL);
	if (source == NULL || target == NULL)
		return;
	blob = save_blob(source, &len);
	expected = snapshot(source);
	for (int32_t i = 0; i < n; i++)
		tst_model_calibration(target)[i] = 1.0f;

	write_le32(blob + OFFSET_VERSION, 1);
	CHECK(tst_model_load(target, blob, len - CALIBRATION_RECORD_BYTES, errmsg) == TST_OK);
	CHECK(matches_snapshot(target, expected));
	for (int32_t i = 0; i < n; i++)
		CHECK(tst_model_calibration(target)[i] == 0.0f);

	free(expected);
	free(blob);
	tst_model_free(source);
	tst_model_free(target);
}

int
main(void)
{
	RUN(round_trip_restores_every_value);
	RUN(saved_size_matches_layout);
	RUN(header_and_first_record_bytes);
	RUN(truncated_blob_rejected_at_every_length);
	RUN(empty_blob_rejected);
	RUN(flipped_header_byte_rejected);
	RUN(other_version_rejected);
	RUN(big_endian_marker_rejected);
	RUN(wrong_tensor_count_rejected);
	RUN(nan_or_infinity_value_rejected);
	RUN(wrong_tensor_name_rejected);
	RUN(wrong_tensor_shape_rejected);
	RUN(trailing_bytes_rejected);
	RUN(version_1_blob_loads_uncalibrated);
	return test_summary();
}
