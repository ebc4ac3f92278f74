/*
 * format.c
 *		Save and load a model's parameters as a weights blob.
 *
 * The layout (docs/model-format.md) is a 16-byte header followed by one
 * record per parameter tensor in the order of tst_model_tensor, then (from
 * version 2) one record of the calibration offsets. Every integer
 * and float is little-endian and is encoded byte by byte, so the blob is the
 * same on every host.
 *
 * Loading runs in two passes over the blob. The first pass checks the header,
 * every record's name and shape against the model, every value (finite) and
 * the exact length, without writing anything. Only when the whole blob is
 * valid does the second pass copy the values, so a failed load leaves the
 * model unchanged and needs no scratch memory.
 */
#include "kernels.h"
#include "tst_core.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HEADER_BYTES 16
#define BYTE_ORDER_MARKER 0x01020304u
/* The marker as a little-endian reader sees a big-endian writer's bytes. */
#define BYTE_ORDER_MARKER_SWAPPED 0x04030201u

/* Maximum name bytes printed in a message. Longer names end with "...". */
#define MAX_PRINTED_NAME 48

/* A bounded reader over the blob. Every read checks the remaining length. */
typedef struct BlobReader
{
	const uint8_t *buf;
	size_t		len;
	size_t		pos;
} BlobReader;

static uint8_t *
put_u8(uint8_t *p, uint8_t value)
{
	*p = value;
	return p + 1;
}

static uint8_t *
put_u16(uint8_t *p, uint16_t value)
{
	p[0] = (uint8_t) (value & 0xff);
	p[1] = (uint8_t) (value >> 8);
	return p + 2;
}

static uint8_t *
put_u32(uint8_t *p, uint32_t value)
{
	p[0] = (uint8_t) (value & 0xff);
	p[1] = (uint8_t) ((value >> 8) & 0xff);
	p[2] = (uint8_t) ((value >> 16) & 0xff);
	p[3] = (uint8_t) (value >> 24);
	return p + 4;
}

static uint32_t
get_u32_at(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static bool
read_bytes(BlobReader *reader, size_t n, const uint8_t **out)
{
	if (reader->len - reader->pos < n)
		return false;
	*out = reader->buf + reader->pos;
	reader->pos += n;
	return true;
}

static bool
read_u8(BlobReader *reader, uint8_t *value)
{
	const uint8_t *p;

	if (!read_bytes(reader, 1, &p))
		return false;
	*value = p[0];
	return true;
}

static bool
read_u16(BlobReader *reader, uint16_t *value)
{
	const uint8_t *p;

	if (!read_bytes(reader, 2, &p))
		return false;
	*value = (uint16_t) (p[0] | (p[1] << 8));
	return true;
}

static bool
read_u32(BlobReader *reader, uint32_t *value)
{
	const uint8_t *p;

	if (!read_bytes(reader, 4, &p))
		return false;
	*value = get_u32_at(p);
	return true;
}

/*
 * Copy a name from the blob into out for a message, replacing bytes that are
 * not printable ASCII (or are quotes or backslashes) with '?' and cutting long
 * names. out must hold MAX_PRINTED_NAME + 4 bytes.
 */
static void
printable_name(const uint8_t *name, size_t length, char *out)
{
	size_t		n = length < MAX_PRINTED_NAME ? length : MAX_PRINTED_NAME;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		int			c = name[i];

		out[i] = (isprint(c) && c != '"' && c != '\\' && c < 0x80) ? (char) c : '?';
	}
	if (length > MAX_PRINTED_NAME)
	{
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Name of the record after the parameters that holds the calibration. */
#define CALIBRATION_NAME "calibration"

/*
 * The calibration offsets (H, Q) seen as a tensor record. Saving only reads
 * them, so casting const away for tst_model_calibration is safe there too.
 */
static TstTensor
calibration_tensor(const TstModel *model)
{
	const TstConfig *config = tst_model_config(model);
	TstTensor	t;

	memset(&t, 0, sizeof(t));
	t.name = CALIBRATION_NAME;
	t.ndim = 2;
	t.shape[0] = config->horizon;
	t.shape[1] = config->n_quantiles;
	t.size = (int64_t) config->horizon * config->n_quantiles;
	t.data = tst_model_calibration((TstModel *) model);
	return t;
}

static size_t
tensor_record_bytes(const TstTensor *tensor)
{
	return 2 + strlen(tensor->name) + 1 + 4 * (size_t) tensor->ndim +
		4 * (size_t) tensor->size;
}

/*
 * tst_model_tensor takes a non-const model because callers may write the
 * data it points to. Saving only reads, so casting const away is safe.
 */
static const TstTensor *
model_tensor(const TstModel *model, int32_t index)
{
	return tst_model_tensor((TstModel *) model, index);
}

size_t
tst_model_saved_size(const TstModel *model)
{
	int32_t		count = tst_model_num_tensors(model);
	size_t		total = HEADER_BYTES;
	int32_t		i;

	TstTensor	calibration = calibration_tensor(model);

	for (i = 0; i < count; i++)
		total += tensor_record_bytes(model_tensor(model, i));
	return total + tensor_record_bytes(&calibration);
}

/* Write one tensor record at p and return the byte after it. */
static uint8_t *
put_record(uint8_t *p, const TstTensor *tensor)
{
	size_t		name_length = strlen(tensor->name);

	p = put_u16(p, (uint16_t) name_length);
	memcpy(p, tensor->name, name_length);
	p += name_length;
	p = put_u8(p, (uint8_t) tensor->ndim);
	for (int32_t d = 0; d < tensor->ndim; d++)
		p = put_u32(p, (uint32_t) tensor->shape[d]);
	for (int64_t k = 0; k < tensor->size; k++)
		p = put_u32(p, tst_float_bits(tensor->data[k]));
	return p;
}

void
tst_model_save(const TstModel *model, uint8_t *buf)
{
	int32_t		count = tst_model_num_tensors(model);
	uint8_t    *p = buf;
	int32_t		i;
	TstTensor	calibration = calibration_tensor(model);

	memcpy(p, TST_FORMAT_MAGIC, 4);
	p += 4;
	p = put_u32(p, TST_FORMAT_VERSION);
	p = put_u32(p, BYTE_ORDER_MARKER);
	p = put_u32(p, (uint32_t) count);

	for (i = 0; i < count; i++)
		p = put_record(p, model_tensor(model, i));
	put_record(p, &calibration);
}

/* Check the 16-byte header: magic, version, byte-order marker, count. */
static TstStatus
check_header(BlobReader *reader, int32_t expected_count, uint32_t *version_out,
			 char *errmsg)
{
	const uint8_t *magic;
	uint32_t	version;
	uint32_t	marker;
	uint32_t	count;

	if (reader->len < HEADER_BYTES)
	{
		tst_set_error(errmsg, "weights blob is %zu bytes, shorter than the %d-byte header",
				  reader->len, HEADER_BYTES);
		return TST_ERR_FORMAT;
	}
	read_bytes(reader, 4, &magic);
	if (memcmp(magic, TST_FORMAT_MAGIC, 4) != 0)
	{
		tst_set_error(errmsg, "invalid magic bytes %02x %02x %02x %02x, expected \"%s\"",
				  magic[0], magic[1], magic[2], magic[3], TST_FORMAT_MAGIC);
		return TST_ERR_FORMAT;
	}

	read_u32(reader, &version);
	if (version < TST_FORMAT_MIN_VERSION || version > TST_FORMAT_VERSION)
	{
		tst_set_error(errmsg, "unsupported weights format version %u, expected version %d to %d",
				  version, TST_FORMAT_MIN_VERSION, TST_FORMAT_VERSION);
		return TST_ERR_FORMAT;
	}
	*version_out = version;

	read_u32(reader, &marker);
	if (marker == BYTE_ORDER_MARKER_SWAPPED)
	{
		tst_set_error(errmsg, "weights blob was written big-endian (byte-order marker 0x%08x), only little-endian is supported",
				  marker);
		return TST_ERR_FORMAT;
	}
	if (marker != BYTE_ORDER_MARKER)
	{
		tst_set_error(errmsg, "invalid byte-order marker 0x%08x, expected 0x%08x",
				  marker, BYTE_ORDER_MARKER);
		return TST_ERR_FORMAT;
	}

	read_u32(reader, &count);
	if (count != (uint32_t) expected_count)
	{
		tst_set_error(errmsg, "weights blob has %u tensors, expected %d",
				  count, expected_count);
		return TST_ERR_FORMAT;
	}
	return TST_OK;
}

static TstStatus
truncated(const BlobReader *reader, int32_t index, const char *name,
		  const char *part, char *errmsg)
{
	tst_set_error(errmsg, "weights blob ends at byte %zu, inside the %s of tensor %d (\"%s\")",
			  reader->len, part, index, name);
	return TST_ERR_FORMAT;
}

/*
 * Check one tensor record against the model's tensor: name, dimensions and
 * finite values. Advances the reader past the record.
 */
static TstStatus
check_record(BlobReader *reader, int32_t index, const TstTensor *tensor,
			 char *errmsg)
{
	uint16_t	name_length;
	const uint8_t *name;
	uint8_t		ndim;
	uint32_t	dims[2];
	size_t		value_bytes;
	const uint8_t *values;
	char		printed[MAX_PRINTED_NAME + 4];
	int64_t		k;
	int32_t		d;

	if (!read_u16(reader, &name_length))
		return truncated(reader, index, tensor->name, "name length", errmsg);
	if (!read_bytes(reader, name_length, &name))
		return truncated(reader, index, tensor->name, "name", errmsg);
	if (name_length != strlen(tensor->name) ||
		memcmp(name, tensor->name, name_length) != 0)
	{
		printable_name(name, name_length, printed);
		tst_set_error(errmsg, "tensor %d is named \"%s\", expected \"%s\"",
				  index, printed, tensor->name);
		return TST_ERR_FORMAT;
	}

	if (!read_u8(reader, &ndim))
		return truncated(reader, index, tensor->name, "dimension count", errmsg);
	if (ndim != tensor->ndim)
	{
		tst_set_error(errmsg, "tensor %d (\"%s\") has ndim %u, expected %d",
				  index, tensor->name, ndim, tensor->ndim);
		return TST_ERR_FORMAT;
	}
	for (d = 0; d < tensor->ndim; d++)
	{
		if (!read_u32(reader, &dims[d]))
			return truncated(reader, index, tensor->name, "shape", errmsg);
	}
	for (d = 0; d < tensor->ndim; d++)
	{
		if (dims[d] != (uint32_t) tensor->shape[d])
		{
			if (tensor->ndim == 1)
				tst_set_error(errmsg, "tensor %d (\"%s\") has shape (%u), expected (%d)",
						  index, tensor->name, dims[0], tensor->shape[0]);
			else
				tst_set_error(errmsg, "tensor %d (\"%s\") has shape (%u, %u), expected (%d, %d)",
						  index, tensor->name, dims[0], dims[1],
						  tensor->shape[0], tensor->shape[1]);
			return TST_ERR_FORMAT;
		}
	}

	/* The shape matched the model's, so this product cannot overflow. */
	value_bytes = 4 * (size_t) tensor->size;
	if (!read_bytes(reader, value_bytes, &values))
		return truncated(reader, index, tensor->name, "values", errmsg);
	for (k = 0; k < tensor->size; k++)
	{
		float		value = tst_bits_float(get_u32_at(values + 4 * k));

		if (!isfinite(value))
		{
			tst_set_error(errmsg, "tensor %d (\"%s\") element %lld is %s, expected a finite value",
					  index, tensor->name, (long long) k,
					  isnan(value) ? "nan" : "infinite");
			return TST_ERR_FORMAT;
		}
	}
	return TST_OK;
}

/* Copy one record's values, already checked, into the tensor. */
static void
copy_values(TstTensor *tensor, const uint8_t *values)
{
	int64_t		k;

	for (k = 0; k < tensor->size; k++)
		tensor->data[k] = tst_bits_float(get_u32_at(values + 4 * k));
}

TstStatus
tst_model_load(TstModel *model, const uint8_t *buf, size_t len, char *errmsg)
{
	BlobReader	reader = {buf, len, 0};
	int32_t		count;
	int32_t		i;
	uint32_t	version = 0;
	TstTensor	calibration;
	TstStatus	status;

	if (model == NULL || (buf == NULL && len > 0))
	{
		tst_set_error(errmsg, "model and weights blob must not be null");
		return TST_ERR_ARGUMENT;
	}
	count = tst_model_num_tensors(model);

	/* First pass: validate the whole blob without writing to the model. */
	calibration = calibration_tensor(model);
	status = check_header(&reader, count, &version, errmsg);
	if (status != TST_OK)
		return status;
	for (i = 0; i < count; i++)
	{
		status = check_record(&reader, i, model_tensor(model, i), errmsg);
		if (status != TST_OK)
			return status;
	}
	/* Version 2 adds the calibration record, numbered after the tensors. */
	if (version >= 2)
	{
		status = check_record(&reader, count, &calibration, errmsg);
		if (status != TST_OK)
			return status;
	}
	if (reader.pos != len)
	{
		tst_set_error(errmsg, "weights blob has %zu trailing bytes after the last record, expected a length of %zu",
				  len - reader.pos, reader.pos);
		return TST_ERR_FORMAT;
	}

	/*
	 * Second pass: the blob is valid, so every record's header matches the
	 * model's tensor and its values start at a known offset.
	 */
	reader.pos = HEADER_BYTES;
	for (i = 0; i < count; i++)
	{
		TstTensor  *tensor = tst_model_tensor(model, i);
		size_t		record_header = 2 + strlen(tensor->name) + 1 + 4 * (size_t) tensor->ndim;

		copy_values(tensor, buf + reader.pos + record_header);
		reader.pos += tensor_record_bytes(tensor);
	}
	if (version >= 2)
		copy_values(&calibration, buf + reader.pos + 2 + strlen(CALIBRATION_NAME) + 1 + 8);
	else
		tst_model_set_calibration(model, NULL);
	return TST_OK;
}
