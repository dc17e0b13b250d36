/* What a program prints for `--list-libraries`, so that the orchestrator can bundle it with the
 * shared objects it runs with (src/orchestrator/envd-bundle.c): the dynamic loader (the main
 * program's PT_INTERP) on the first line, then every other shared object this process has
 * loaded, by the host path it was loaded from (the dynamic linker's own list, so sanitizer
 * runtimes and indirect dependencies are included; the vDSO is not a file and is skipped). */
#pragma once

#include <stdio.h>

/* Writes the list to f. Returns 0, or -ENOEXEC for a program without a loader (static). */
int self_libs_print(FILE *f);
