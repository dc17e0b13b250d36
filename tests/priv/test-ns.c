/* The namespace backend for real, as root: create/start/exec, namespaces, root filesystem,
 * limits, freeze, connect, exec-into, teardown, child errors, hostile templates. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "priv-util.h"
#include "runtime/ns/ns.h"
#include "tap.h"

#define SH(...) ((const char *const[]){ "/bin/sh", "-c", __VA_ARGS__, NULL })

TEST(true_exit_code)
{
    struct priv_env env;
    priv_env_init(&env);
    struct runtime_spec spec;
    static struct priv_result res;
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/true", NULL });
    priv_run(&env, &spec, &res);
    if (res.create_r < 0 || res.start_r < 0)
        printf("# %s\n", res.err.msg);
    ASSERT_OK(res.create_r);
    ASSERT_OK(res.start_r);
    ASSERT_TRUE(WIFEXITED(res.status));
    ASSERT_EQ(WEXITSTATUS(res.status), 0);

    priv_spec_init(&env, &spec, SH("exit 7"));
    priv_run(&env, &spec, &res);
    ASSERT_OK(res.start_r);
    ASSERT_EQ(WEXITSTATUS(res.status), 7);
    priv_env_release(&env);
}
