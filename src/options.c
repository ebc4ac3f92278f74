/*
 * options.c
 *		Parse tst.train options and model configurations from jsonb.
 *
 * One table of fields serves both uses. tst.train accepts any subset of the
 * fields and fills the rest with defaults. A configuration read back from
 * tst.models must contain every model field, because a row edited by hand
 * must not silently change meaning. Values are range-checked by the engine
 * (tst_config_validate) so that the rules live in one place.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "tst.h"

typedef enum FieldKind
{
	FIELD_INT,
	FIELD_INT64,
	FIELD_FLOAT,
	FIELD_ATTENTION,
	FIELD_QUANTILES
} FieldKind;

typedef enum FieldOwner
{
	OWNER_MODEL,				/* part of TstConfig, stored in tst.models */
	OWNER_TRAIN					/* training option, only for tst.train */
} FieldOwner;

typedef struct FieldSpec
{
	const char *name;
	FieldKind	kind;
	FieldOwner	owner;
} FieldSpec;

static const FieldSpec fields[] = {
	{"context", FIELD_INT, OWNER_MODEL},
	{"horizon", FIELD_INT, OWNER_MODEL},
	{"patch_len", FIELD_INT, OWNER_MODEL},
	{"patch_stride", FIELD_INT, OWNER_MODEL},
	{"d_model", FIELD_INT, OWNER_MODEL},
	{"n_heads", FIELD_INT, OWNER_MODEL},
	{"n_layers", FIELD_INT, OWNER_MODEL},
	{"d_ff", FIELD_INT, OWNER_MODEL},
	{"dropout", FIELD_FLOAT, OWNER_MODEL},
	{"attention", FIELD_ATTENTION, OWNER_MODEL},
	{"window", FIELD_INT, OWNER_MODEL},
	{"quantiles", FIELD_QUANTILES, OWNER_MODEL},
	{"epochs", FIELD_INT, OWNER_TRAIN},
	{"batch_size", FIELD_INT, OWNER_TRAIN},
	{"learning_rate", FIELD_FLOAT, OWNER_TRAIN},
	{"weight_decay", FIELD_FLOAT, OWNER_TRAIN},
	{"validation_fraction", FIELD_FLOAT, OWNER_TRAIN},
	{"patience", FIELD_INT, OWNER_TRAIN},
	{"seed", FIELD_INT64, OWNER_TRAIN},
	{"max_seconds", FIELD_FLOAT, OWNER_TRAIN},
	{"clip_norm", FIELD_FLOAT, OWNER_TRAIN},
	{"warmup_fraction", FIELD_FLOAT, OWNER_TRAIN},
	{"max_windows_per_epoch", FIELD_INT64, OWNER_TRAIN},
};

#define N_FIELDS lengthof(fields)

/* Where a parsed value comes from, for error messages. */
typedef struct ParseTarget
{
	TstConfig  *config;
	TstTrainOptions *train;		/* NULL when parsing a stored config */
	const char *label;			/* "option" or "model \"x\" config field" */
} ParseTarget;

const char *
tst_json_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "value";
	}
}

static double
json_number(const JsonbValue *v, const ParseTarget *target, const char *key)
{
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" must be a number, not a %s",
						target->label, key, tst_json_type_name(v))));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

static int64
json_integer(const JsonbValue *v, const ParseTarget *target, const char *key,
			 int64 min_value, int64 max_value)
{
	double		d = json_number(v, target, key);

	if (d != floor(d) || d < (double) min_value || d > (double) max_value)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" must be an integer from " INT64_FORMAT " to " INT64_FORMAT ", not %s",
						target->label, key, min_value, max_value,
						float8out_internal(d))));
	return (int64) d;
}

static void
parse_quantiles(const JsonbValue *v, const ParseTarget *target, const char *key)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	int			n = 0;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" must be an array of numbers, not a %s",
						target->label, key, tst_json_type_name(v)),
				 errhint("For example: [0.1, 0.5, 0.9].")));

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (n >= TST_MAX_QUANTILES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s \"%s\" has more than %d levels",
							target->label, key, TST_MAX_QUANTILES)));
		target->config->quantiles[n++] = (float) json_number(&elem, target, key);
	}
	target->config->n_quantiles = n;
}

static void
set_field(const FieldSpec *f, const JsonbValue *v, const ParseTarget *target)
{
	TstConfig  *c = target->config;
	TstTrainOptions *t = target->train;
	const char *key = f->name;

	if (f->kind == FIELD_QUANTILES)
	{
		parse_quantiles(v, target, key);
		return;
	}
	if (f->kind == FIELD_ATTENTION)
	{
		char	   *name;

		if (v->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s \"%s\" must be a string, not a %s",
							target->label, key, tst_json_type_name(v))));
		name = pnstrdup(v->val.string.val, v->val.string.len);
		if (!tst_attention_parse(name, &c->attention))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown attention kind \"%s\"", name),
					 errhint("Use \"local\", \"logsparse\" or \"dense\".")));
		return;
	}

	if (strcmp(key, "context") == 0)
		c->context = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "horizon") == 0)
		c->horizon = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "patch_len") == 0)
		c->patch_len = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "patch_stride") == 0)
		c->patch_stride = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "d_model") == 0)
		c->d_model = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "n_heads") == 0)
		c->n_heads = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "n_layers") == 0)
		c->n_layers = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "d_ff") == 0)
		c->d_ff = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "window") == 0)
		c->window = (int32) json_integer(v, target, key, PG_INT32_MIN, PG_INT32_MAX);
	else if (strcmp(key, "dropout") == 0)
		c->dropout = (float) json_number(v, target, key);
	else if (t == NULL)
		elog(ERROR, "training field \"%s\" parsed without training options", key);
	else if (strcmp(key, "epochs") == 0)
		t->epochs = (int32) json_integer(v, target, key, 1, TST_MAX_EPOCHS);
	else if (strcmp(key, "batch_size") == 0)
		t->batch_size = (int32) json_integer(v, target, key, 1, 65536);
	else if (strcmp(key, "patience") == 0)
		t->patience = (int32) json_integer(v, target, key, 1, TST_MAX_EPOCHS);
	else if (strcmp(key, "seed") == 0)
		t->seed = (uint64) json_integer(v, target, key, 0, PG_INT64_MAX);
	else if (strcmp(key, "max_windows_per_epoch") == 0)
		t->max_windows_per_epoch = json_integer(v, target, key, 0, PG_INT64_MAX);
	else if (strcmp(key, "learning_rate") == 0)
		t->learning_rate = json_number(v, target, key);
	else if (strcmp(key, "weight_decay") == 0)
		t->weight_decay = json_number(v, target, key);
	else if (strcmp(key, "validation_fraction") == 0)
		t->validation_fraction = json_number(v, target, key);
	else if (strcmp(key, "max_seconds") == 0)
		t->max_seconds = json_number(v, target, key);
	else if (strcmp(key, "clip_norm") == 0)
		t->clip_norm = json_number(v, target, key);
	else if (strcmp(key, "warmup_fraction") == 0)
		t->warmup_fraction = json_number(v, target, key);
	else
		elog(ERROR, "unhandled field \"%s\"", key);
}

static const char *
field_list(FieldOwner max_owner)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < (int) N_FIELDS; i++)
		if (fields[i].owner <= max_owner)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", fields[i].name);
	return buf.data;
}

/*
 * Walk the top-level object and set each known field. Returns a bitmap of
 * the fields seen.
 */
static uint64
parse_object(Jsonb *json, const ParseTarget *target, FieldOwner max_owner)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	uint64		seen = 0;

	if (!JB_ROOT_IS_OBJECT(json) || JB_ROOT_IS_SCALAR(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object"),
				 errhint("For example: '{\"epochs\": 20, \"context\": 96}'.")));

	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		int			i;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		for (i = 0; i < (int) N_FIELDS; i++)
			if (fields[i].owner <= max_owner && strcmp(fields[i].name, key) == 0)
				break;
		if (i == (int) N_FIELDS)
		{
			/* Stored configs may carry fields for other tools; skip them. */
			if (target->train == NULL)
				continue;
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\"", key),
					 errdetail("Valid options are: %s.", field_list(max_owner))));
		}
		set_field(&fields[i], &v, target);
		seen |= UINT64CONST(1) << i;
	}
	return seen;
}

static void
validate_config(const TstConfig *config, const char *what)
{
	char		errmsg_buf[TST_ERRMSG_LEN] = "";
	TstStatus	status = tst_config_validate(config, errmsg_buf);

	if (status != TST_OK)
		ereport(ERROR,
				(errcode(status == TST_ERR_TOO_LARGE ? ERRCODE_PROGRAM_LIMIT_EXCEEDED
						 : ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", errmsg_buf),
				 errdetail("%s", what)));
}

void
tst_parse_train_options(Jsonb *options, int32 horizon, TstConfig *config,
						TstTrainOptions *train_options)
{
	ParseTarget target = {config, train_options, "option"};
	uint64		seen;
	int			horizon_bit = 1;	/* index of "horizon" in fields[] */

	tst_config_default(config);
	tst_train_options_default(train_options);

	seen = parse_object(options, &target, OWNER_TRAIN);
	if ((seen & (UINT64CONST(1) << horizon_bit)) && config->horizon != horizon)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"horizon\" %d conflicts with argument horizon %d",
						config->horizon, horizon),
				 errhint("Pass the horizon as the function argument only.")));
	config->horizon = horizon;

	if (isnan(train_options->learning_rate) || train_options->learning_rate <= 0 ||
		train_options->learning_rate > 10)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"learning_rate\" %g is out of range",
						train_options->learning_rate),
				 errdetail("The learning rate must be greater than 0 and at most 10.")));
	if (isnan(train_options->weight_decay) || train_options->weight_decay < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"weight_decay\" %g is out of range",
						train_options->weight_decay),
				 errdetail("Weight decay must be 0 or more.")));
	if (isnan(train_options->validation_fraction) ||
		train_options->validation_fraction < 0 ||
		train_options->validation_fraction >= 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"validation_fraction\" %g is out of range",
						train_options->validation_fraction),
				 errdetail("The share of each series held out must be at least 0 and less than 1.")));
	if (isnan(train_options->max_seconds) || train_options->max_seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"max_seconds\" %g is out of range",
						train_options->max_seconds),
				 errdetail("Use 0 for no time limit, or a positive number of seconds.")));
	if (isnan(train_options->clip_norm) || train_options->clip_norm < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"clip_norm\" %g is out of range", train_options->clip_norm),
				 errdetail("Use 0 for no clipping, or a positive norm.")));
	if (isnan(train_options->warmup_fraction) || train_options->warmup_fraction < 0 ||
		train_options->warmup_fraction > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"warmup_fraction\" %g is out of range",
						train_options->warmup_fraction),
				 errdetail("The warm-up share of all steps must be from 0 to 1.")));

	validate_config(config, "The model configuration comes from the options and their defaults.");
}

void
tst_config_from_jsonb(Jsonb *json, TstConfig *config, const char *model_label)
{
	char	   *label = psprintf("model \"%s\" config field", model_label);
	ParseTarget target = {config, NULL, label};
	uint64		seen;

	tst_config_default(config);
	if (!JB_ROOT_IS_OBJECT(json) || JB_ROOT_IS_SCALAR(json))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" config is not a JSON object", model_label),
				 errdetail("A stored configuration is an object with one field per model setting.")));
	seen = parse_object(json, &target, OWNER_MODEL);
	for (int i = 0; i < (int) N_FIELDS; i++)
		if (fields[i].owner == OWNER_MODEL && !(seen & (UINT64CONST(1) << i)))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s\" config is missing field \"%s\"",
							model_label, fields[i].name),
					 errdetail("A stored configuration must name every model field.")));
	validate_config(config, psprintf("The configuration of model \"%s\" is invalid.", model_label));
}

/* Shortest text that reads back as the same float4, as float4out prints. */
static char *
float4_text(float value)
{
	return DatumGetCString(DirectFunctionCall1(float4out, Float4GetDatum(value)));
}

Jsonb *
tst_config_to_jsonb(const TstConfig *c)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "{\"context\": %d, \"horizon\": %d, \"patch_len\": %d, "
					 "\"patch_stride\": %d, \"d_model\": %d, \"n_heads\": %d, "
					 "\"n_layers\": %d, \"d_ff\": %d, \"dropout\": %s, "
					 "\"attention\": \"%s\", \"window\": %d, \"quantiles\": [",
					 c->context, c->horizon, c->patch_len, c->patch_stride,
					 c->d_model, c->n_heads, c->n_layers, c->d_ff,
					 float4_text(c->dropout),
					 tst_attention_name(c->attention), c->window);
	for (int i = 0; i < c->n_quantiles; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "",
						 float4_text(c->quantiles[i]));
	appendStringInfo(&buf, "], \"format_version\": %d}", TST_FORMAT_VERSION);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
