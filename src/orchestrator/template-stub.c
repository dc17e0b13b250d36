/* Stand-ins for the template builder (orchestrator.h: orch_template_build_start and
 * orch_template_delete) until the real ones land in build.c; the lead engineer deletes this
 * file then. A build cannot start (501); a delete removes the store records only, leaving
 * layer directories for the real implementation's garbage collection. */
#include <errno.h>

#include "orchestrator/orchestrator.h"
#include "common/banned.h"

int orch_template_build_start(struct orch *o, const char *template_id, const char *build_id,
                              const json_t *spec, struct error_record *err)
{
    return error_set(err, EOPNOTSUPP, "this server cannot build templates yet");
}

int orch_template_delete(struct orch *o, const char *template_id, struct error_record *err)
{
    struct store *s = orch_store_lock(o);
    int r = store_template_delete(s, template_id, err);
    orch_store_unlock(o);
    return r;
}
