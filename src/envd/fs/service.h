/* The Connect side of the filesystem service: request helpers shared by service.c and
 * watch.c, and the watch handlers. Needs envd's core (users, paths, identity switching). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "envd/connect.h"
#include "envd/envd.h"

/* The Connect code for an errno of a filesystem operation (ENOENT not_found, EACCES
 * permission_denied, ELOOP failed_precondition, ...). */
enum connect_code fs_errno_to_connect(int errnum);
/* Fills err with that code and "<what> '<path>': <strerror>"; returns -1. */
int fs_connect_errno(struct connect_error *err, int errnum, const char *what, const char *path);

/* A string field by its JSON name or its proto name; absent or null reads as "". */
int fs_req_string(const json_t *req, const char *camel, const char *snake, const char **ret,
                  struct connect_error *err);
int fs_req_bool(const json_t *req, const char *camel, const char *snake, bool *ret,
                struct connect_error *err);

/* The run-as user of the call and path resolved for that user (malloc'd). */
int fs_req_user_path(struct connect_call *call, const char *path, struct envd_user *user, char **ret_path,
                     struct connect_error *err);
/* envd_as_user(), with a permission_denied error when the switch fails. */
int fs_become(const struct envd_user *user, struct connect_error *err);

int fs_watch_dir(struct connect_call *call, json_t *req, const struct connect_stream_ops **ret_ops,
                 void **ret_state, struct connect_error *err);
int fs_create_watcher(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err);
int fs_get_watcher_events(struct connect_call *call, json_t *req, json_t **ret_resp,
                          struct connect_error *err);
int fs_remove_watcher(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err);
