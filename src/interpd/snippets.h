/* The code interpd itself runs in kernels, per language: setting and restoring the environment
 * variables of one execution, applying the sandbox-wide ones, and the Python setup at kernel
 * start.
 *
 * Invariant: no value from a request is ever spliced into code as a string literal. Values
 * travel base64-encoded (JSON inside) and are decoded by the kernel's own libraries (Python's
 * base64/json, R's jsonlite, JS's atob/JSON), so no quoting bug can turn a value into code;
 * bash, which has no JSON decoder, gets single-quoted words. Names are checked by
 * snippet_env_name_valid() before any of this runs. All functions return a new string (free()
 * it), or NULL for a language without support. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

/* [A-Za-z_][A-Za-z0-9_]*, at most 256 bytes. */
bool snippet_env_name_valid(const char *name);

/* Saves the current values of vars' names, then sets vars (an object of strings). */
char *snippet_env_set(const char *language, const json_t *vars);
/* Restores what the last snippet_env_set() saved. */
char *snippet_env_restore(const char *language);
/* Sets vars for good (the sandbox-wide variables of envd's /envs). */
char *snippet_env_apply(const char *language, const json_t *vars);

/* Python kernel setup: prepends python_lib to sys.path and, for each of hutch's kernel modules
 * found there, installs it: hutch_display.register(), hutch_iostream.install(),
 * hutch_dispatch.install(). Runs in a private namespace. */
char *snippet_python_setup(const char *python_lib);
