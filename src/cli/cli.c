/* See cli.h. */
#include "cli/cli.h"

#include <stdlib.h>

#include "common/banned.h"

const char *cli_state_dir(const char *option)
{
    if (option && *option)
        return option;
    const char *env = getenv("HUTCH_STATE_DIR");
    if (env && *env)
        return env;
    return HUTCH_DEFAULT_STATE_DIR;
}
