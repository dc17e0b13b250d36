/* Env snippets: names are checked, values never appear in the code as literals. */
#include <string.h>

#include "interpd/snippets.h"
#include "tap.h"

TEST(env_names)
{
    ASSERT_TRUE(snippet_env_name_valid("FOO_1"));
    ASSERT_TRUE(snippet_env_name_valid("_x"));
    ASSERT_FALSE(snippet_env_name_valid(""));
    ASSERT_FALSE(snippet_env_name_valid("1A"));
    ASSERT_FALSE(snippet_env_name_valid("A-B"));
    ASSERT_FALSE(snippet_env_name_valid("A;rm"));
    ASSERT_FALSE(snippet_env_name_valid("A B"));
}

TEST(values_are_not_spliced)
{
    json_t *vars = json_pack("{s:s}", "X", "'); import os; os.system('boom'); ('");
    const char *langs[] = { "python", "r", "javascript", "typescript" };
    for (size_t i = 0; i < 4; i++) {
        char *code = snippet_env_set(langs[i], vars);
        ASSERT_TRUE(code != NULL);
        ASSERT_TRUE(strstr(code, "boom") == NULL);
        free(code);
        code = snippet_env_apply(langs[i], vars);
        ASSERT_TRUE(strstr(code, "boom") == NULL);
        free(code);
        code = snippet_env_restore(langs[i]);
        ASSERT_TRUE(code != NULL);
        free(code);
    }
    ASSERT_TRUE(snippet_env_set("cobol", vars) == NULL);
    json_decref(vars);
}

TEST(bash_quotes_single_quotes)
{
    json_t *vars = json_pack("{s:s}", "X", "a'b");
    char *code = snippet_env_set("bash", vars);
    ASSERT_TRUE(strstr(code, "export X='a'\\''b'") != NULL);
    free(code);
    json_decref(vars);
}
