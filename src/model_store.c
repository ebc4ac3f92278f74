/*
 * model_store.c
 *		Read and write tst.models, and cache loaded models per backend.
 *
 * Every lookup queries tst.models (through SPI, with the caller's
 * privileges and snapshot) for the row the reference names, and identifies
 * that row by its version, xmin and ctid. A cached model is reused only when all three
 * match, so a model that was updated, replaced or dropped is never served
 * stale, while an unchanged model is parsed and validated once per backend.
 *
 * A model under load lives in its own memory context below the caller's.
 * Only after it is validated does the context move under the cache
 * context, so an error half way leaks nothing.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "tst.h"

/* Models kept per backend; the least recently used is evicted. */
#define MODEL_CACHE_SIZE 8

typedef struct ModelCacheEntry
{
	TstLoadedModel *loaded;		/* NULL for a free slot */
	char	   *row_tag;		/* "xmin:ctid" of the row it was loaded from */
	uint64		last_used;
} ModelCacheEntry;

static ModelCacheEntry model_cache[MODEL_CACHE_SIZE];
static MemoryContext model_cache_context = NULL;
static uint64 model_cache_clock = 0;

/* Split "name@version" into its parts; version 0 means the latest. */
static void
parse_model_ref(const char *ref, char **name, int32 *version)
{
	const char *at = strrchr(ref, '@');

	*version = 0;
	*name = pstrdup(ref);
	if (at != NULL)
	{
		char	   *end;
		long		v;

		errno = 0;
		v = strtol(at + 1, &end, 10);
		if (at[1] == '\0' || *end != '\0' || errno != 0 || v < 1 || v > PG_INT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid model reference \"%s\"", ref),
					 errhint("Use a model name for its latest version, or name@version, as in \"sales@3\".")));
		(*name)[at - ref] = '\0';
		*version = (int32) v;
	}
	if ((*name)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
}

static void
evict_entry(ModelCacheEntry *entry)
{
	if (entry->loaded != NULL)
		MemoryContextDelete(entry->loaded->context);
	if (entry->row_tag != NULL)
		pfree(entry->row_tag);
	entry->loaded = NULL;
	entry->row_tag = NULL;
}

/* Parse, build and validate a model from a row's config and weights. */
static TstLoadedModel *
load_model(const char *name, int32 version, Jsonb *config_json, bytea *weights)
{
	MemoryContext context;
	MemoryContext old;
	TstLoadedModel *loaded;
	TstConfig	config;
	TstAllocator allocator;
	TstStatus	status;
	char		errmsg_buf[TST_ERRMSG_LEN] = "";
	char	   *label = psprintf("%s@%d", name, version);

	tst_config_from_jsonb(config_json, &config, label);

	context = AllocSetContextCreate(CurrentMemoryContext, "tst model",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(context);
	loaded = palloc0(sizeof(TstLoadedModel));
	loaded->name = pstrdup(name);
	loaded->version = version;
	loaded->context = context;
	tst_context_allocator(&allocator, context);

	status = tst_model_create(&config, &allocator, &loaded->model, errmsg_buf);
	if (status != TST_OK)
		tst_report_status(status, errmsg_buf,
						  psprintf("Model \"%s\" could not be created from its config.", label));

	status = tst_model_load(loaded->model, (const uint8_t *) VARDATA_ANY(weights),
							VARSIZE_ANY_EXHDR(weights), errmsg_buf);
	if (status != TST_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid weights in model \"%s\": %s", label, errmsg_buf),
				 errdetail("The weights column does not match the model's config or the format in docs/model-format.md."),
				 errhint("Retrain the model, or restore the row from a backup.")));
	MemoryContextSwitchTo(old);
	return loaded;
}

TstLoadedModel *
tst_get_model(const char *model_ref)
{
	char	   *name;
	int32		version;
	int32		found_version;
	char	   *row_tag;
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	int			ret;
	bool		isnull;
	ModelCacheEntry *entry = NULL;
	ModelCacheEntry *victim = &model_cache[0];
	TstLoadedModel *loaded;
	MemoryContext caller_context = CurrentMemoryContext;

	parse_model_ref(model_ref, &name, &version);
	args[0] = CStringGetTextDatum(name);
	args[1] = Int32GetDatum(version);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* read_only: use the calling statement's snapshot, so one query sees one version. */
	ret = SPI_execute_with_args(
		"SELECT version, xmin::text || ':' || ctid::text FROM tst.models "
		"WHERE name OPERATOR(pg_catalog.=) $1 "
		"AND ($2 OPERATOR(pg_catalog.=) 0 OR version OPERATOR(pg_catalog.=) $2) "
		"ORDER BY version DESC LIMIT 1",
		2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "model lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		if (version > 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model \"%s\" has no version %d", name, version),
					 errhint("List the versions with: SELECT version FROM tst.models WHERE name = '%s'.", name)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("Train it with tst.train, or list the models in tst.models.")));
	}
	found_version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	row_tag = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

	for (int i = 0; i < MODEL_CACHE_SIZE; i++)
	{
		ModelCacheEntry *e = &model_cache[i];

		if (e->loaded != NULL && e->loaded->version == found_version &&
			strcmp(e->loaded->name, name) == 0)
		{
			if (strcmp(e->row_tag, row_tag) == 0)
				entry = e;
			else
				evict_entry(e); /* the row changed under the same version */
		}
		if (e->loaded == NULL || (victim->loaded != NULL && e->last_used < victim->last_used))
			victim = e;
	}

	if (entry == NULL)
	{
		Datum		load_args[2];
		Datum		config_datum;
		Datum		weights_datum;
		bool		weights_null;
		MemoryContext spi_context;

		load_args[0] = args[0];
		load_args[1] = Int32GetDatum(found_version);
		ret = SPI_execute_with_args(
			"SELECT config, weights FROM tst.models "
			"WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
			2, argtypes, load_args, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "model \"%s\" version %d vanished during lookup", name, found_version);
		config_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		weights_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &weights_null);
		if (isnull || weights_null)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s@%d\" has a NULL config or weights", name, found_version)));

		/* Build below the caller's context, not SPI's, which SPI_finish frees. */
		spi_context = MemoryContextSwitchTo(caller_context);
		loaded = load_model(name, found_version, DatumGetJsonbP(config_datum),
							DatumGetByteaPP(weights_datum));
		MemoryContextSwitchTo(spi_context);

		if (model_cache_context == NULL)
			model_cache_context = AllocSetContextCreate(TopMemoryContext, "tst model cache",
														ALLOCSET_SMALL_SIZES);
		evict_entry(victim);
		MemoryContextSetParent(loaded->context, model_cache_context);
		victim->loaded = loaded;
		victim->row_tag = MemoryContextStrdup(model_cache_context, row_tag);
		entry = victim;
	}

	SPI_finish();
	entry->last_used = ++model_cache_clock;
	return entry->loaded;
}

int32
tst_store_model(const char *name, TstModel *model, Jsonb *metrics)
{
	size_t		size = tst_model_saved_size(model);
	bytea	   *weights;
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, JSONBOID, BYTEAOID, JSONBOID};
	int			ret;
	bool		isnull;
	int32		version;

	if (size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model weights of %zu bytes exceed the 1 GB limit of a bytea value", size),
				 errhint("Use a smaller d_model, n_layers, context or horizon.")));
	weights = palloc(VARHDRSZ + size);
	SET_VARSIZE(weights, VARHDRSZ + size);
	tst_model_save(model, (uint8_t *) VARDATA(weights));

	args[0] = CStringGetTextDatum(name);
	args[1] = JsonbPGetDatum(tst_config_to_jsonb(tst_model_config(model)));
	args[2] = PointerGetDatum(weights);
	args[3] = JsonbPGetDatum(metrics);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Serialize writers of one name, so that concurrent trainings get
	 * distinct versions instead of a unique violation.
	 */
	ret = SPI_execute_with_args(
		"SELECT pg_catalog.pg_advisory_xact_lock("
		"pg_catalog.hashtext('tst.models'), pg_catalog.hashtext($1))",
		1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "advisory lock on model \"%s\" failed: %s", name, SPI_result_code_string(ret));

	ret = SPI_execute_with_args(
		"INSERT INTO tst.models (name, version, config, weights, metrics) "
		"SELECT $1, COALESCE(pg_catalog.max(version), 0) OPERATOR(pg_catalog.+) 1, $2, $3, $4 "
		"FROM tst.models WHERE name OPERATOR(pg_catalog.=) $1 "
		"RETURNING version",
		4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "inserting model \"%s\" failed: %s", name, SPI_result_code_string(ret));
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return version;
}
