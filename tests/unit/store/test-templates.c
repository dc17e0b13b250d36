/* Templates, names, builds, tags and build logs in the store. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store-test.h"
#include "tap.h"

static void mkbuild(struct store_build *b, const char *id, int64_t created)
{
    *b = (struct store_build){ .status = STORE_BUILD_WAITING, .cpu_count = 2, .memory_mb = 1024 };
    snprintf(b->id, sizeof(b->id), "%s", id);
    snprintf(b->envd_version, sizeof(b->envd_version), "0.6.13");
    b->created_at_ms = created;
}

/* A template `id` named `name` with one waiting build `build`, tagged with tags. */
static void request(struct store *s, const char *id, const char *name, const char *build, int64_t created,
                    const char *const *tags, char *ret_id)
{
    struct store_template t = { .created_at_ms = created };
    snprintf(t.id, sizeof(t.id), "%s", id);
    struct store_build b;
    mkbuild(&b, build, created);
    struct error_record e = { 0 };
    int r = store_template_request_build(s, name, &t, &b, tags, ret_id, &e);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "request_build: %s", e.msg);
}

struct strs {
    char v[16][STORE_NAME_MAX + 1];
    char w[16][STORE_BUILD_ID_MAX + 1];
    int n;
};

static int collect_name(const char *name, void *ud)
{
    struct strs *c = ud;
    snprintf(c->v[c->n++], sizeof(c->v[0]), "%s", name);
    return 0;
}

static int collect_tag(const char *tag, const char *build_id, int64_t at, void *ud)
{
    struct strs *c = ud;
    snprintf(c->v[c->n], sizeof(c->v[0]), "%s", tag);
    snprintf(c->w[c->n++], sizeof(c->w[0]), "%s", build_id);
    return 0;
}

static int collect_build(const struct store_build *b, void *ud)
{
    struct strs *c = ud;
    snprintf(c->v[c->n++], sizeof(c->v[0]), "%s", b->id);
    return 0;
}

static int collect_layer(const char *layer, void *ud)
{
    return collect_name(layer, ud);
}

TEST(status_names)
{
    ASSERT_STREQ(store_build_status_to_string(STORE_BUILD_WAITING), "waiting");
    ASSERT_STREQ(store_build_status_to_string(STORE_BUILD_ERROR), "error");
    ASSERT_TRUE(store_build_status_to_string(_STORE_BUILD_STATUS_MAX) == NULL);
    ASSERT_EQ(store_build_status_from_string("building"), STORE_BUILD_BUILDING);
    ASSERT_EQ(store_build_status_from_string("nope"), -EINVAL);
    ASSERT_EQ(store_build_status_from_string(NULL), -EINVAL);
}

TEST(request_build_creates_then_reuses_a_template)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    const char *tags[] = { "v1", "default", NULL };
    request(s, "tpl00000000000000001", "web", "b1", 1000, tags, id);
    ASSERT_STREQ(id, "tpl00000000000000001");

    struct store_template t;
    ASSERT_OK(store_template_get(s, id, &t, &e));
    ASSERT_EQ(t.created_at_ms, 1000);
    ASSERT_FALSE(t.is_snapshot);
    ASSERT_FALSE(t.public);

    /* The same name again: a new build of the same template, not a new template. */
    char id2[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl00000000000000002", "web", "b2", 2000, NULL, id2);
    ASSERT_STREQ(id2, id);
    ASSERT_EQ(store_template_get(s, "tpl00000000000000002", &t, &e), -ENOENT);

    struct strs c = { 0 };
    ASSERT_OK(store_build_list(s, id, collect_build, &c, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.v[0], "b2"); /* newest first */
    ASSERT_STREQ(c.v[1], "b1");

    /* Only v1 is set: default waits for a ready build. */
    struct strs tg = { 0 };
    ASSERT_OK(store_tag_list(s, id, collect_tag, &tg, &e));
    ASSERT_EQ(tg.n, 1);
    ASSERT_STREQ(tg.v[0], "v1");
    ASSERT_STREQ(tg.w[0], "b1");

    struct store_build b;
    ASSERT_OK(store_build_get(s, id, "b1", &b, &e));
    ASSERT_EQ(b.status, STORE_BUILD_WAITING);
    ASSERT_EQ(b.cpu_count, 2);
    ASSERT_EQ(b.memory_mb, 1024);
    ASSERT_STREQ(b.envd_version, "0.6.13");
    ASSERT_TRUE(b.layers_json == NULL);
    store_build_release(&b);
    ASSERT_EQ(store_build_get(s, "other", "b1", &b, &e), -ENOENT);

    /* A taken build id fails the whole request: no new template is left behind. */
    struct store_template nt = { .created_at_ms = 3000 };
    snprintf(nt.id, sizeof(nt.id), "tpl00000000000000003");
    struct store_build dup;
    mkbuild(&dup, "b1", 3000);
    ASSERT_EQ(store_template_request_build(s, "other", &nt, &dup, NULL, id2, &e), -EEXIST);
    ASSERT_EQ(store_template_get(s, "tpl00000000000000003", &t, &e), -ENOENT);
    ASSERT_EQ(store_template_name_lookup(s, "other", id2, &e), -ENOENT);
    store_free(s);
}

TEST(names)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1], id2[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "aaaa", "one", "b1", 1000, NULL, id);
    request(s, "bbbb", "two", "b2", 2000, NULL, id2);
    ASSERT_OK(store_template_name_add(s, "aaaa", "uno", &e));
    ASSERT_OK(store_template_name_add(s, "aaaa", "uno", &e)); /* again: fine */
    ASSERT_EQ(store_template_name_add(s, "aaaa", "two", &e), -EEXIST);
    ASSERT_TRUE(strstr(e.msg, "another template") != NULL);
    ASSERT_EQ(store_template_name_add(s, "nope", "three", &e), -ENOENT);

    char got[STORE_TEMPLATE_ID_MAX + 1];
    ASSERT_OK(store_template_name_lookup(s, "uno", got, &e));
    ASSERT_STREQ(got, "aaaa");
    ASSERT_EQ(store_template_name_lookup(s, "zero", got, &e), -ENOENT);

    struct strs c = { 0 };
    ASSERT_OK(store_template_names(s, "aaaa", collect_name, &c, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.v[0], "one");
    ASSERT_STREQ(c.v[1], "uno");

    ASSERT_OK(store_template_lookup(s, "bbbb", got, &e));
    ASSERT_STREQ(got, "bbbb");
    ASSERT_OK(store_template_lookup(s, "two:v3", got, &e));
    ASSERT_STREQ(got, "bbbb");
    ASSERT_OK(store_template_lookup(s, "aaaa:default", got, &e));
    ASSERT_STREQ(got, "aaaa");
    ASSERT_EQ(store_template_lookup(s, "three", got, &e), -ENOENT);
    ASSERT_EQ(store_template_lookup(s, ":x", got, &e), -ENOENT);
    ASSERT_EQ(store_template_lookup(s, "one:", got, &e), -ENOENT);
    store_free(s);
}

TEST(default_tag_moves_when_a_build_is_ready)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);

    struct store_template t;
    struct store_build b;
    /* Nothing ready yet: still building. */
    ASSERT_EQ(store_template_resolve(s, "web", &t, &b, &e), -EAGAIN);
    ASSERT_EQ(store_template_resolve(s, "nope", &t, &b, &e), -ENOENT);
    ASSERT_TRUE(strstr(e.msg, "nope") != NULL);

    ASSERT_OK(store_build_claim(s, "b1", &e));
    ASSERT_EQ(store_build_claim(s, "b1", &e), -EALREADY);
    ASSERT_TRUE(strstr(e.msg, "building") != NULL);
    ASSERT_EQ(store_build_claim(s, "nope", &e), -ENOENT);
    ASSERT_EQ(store_template_resolve(s, "web", &t, &b, &e), -EAGAIN);

    ASSERT_OK(store_build_finish(s, "b1", STORE_BUILD_READY, "[{\"layer\":\"l1\",\"target\":\"/\"}]",
                                 "{\"user\":\"user\"}", NULL, NULL, &e));
    ASSERT_OK(store_template_resolve(s, "web", &t, &b, &e));
    ASSERT_STREQ(t.id, "tpl1");
    ASSERT_STREQ(b.id, "b1");
    ASSERT_EQ(b.status, STORE_BUILD_READY);
    ASSERT_TRUE(b.finished_at_ms > 0);
    ASSERT_STREQ(b.layers_json, "[{\"layer\":\"l1\",\"target\":\"/\"}]");
    ASSERT_STREQ(b.config_json, "{\"user\":\"user\"}");
    store_build_release(&b);
    ASSERT_OK(store_template_resolve(s, "tpl1:default", NULL, NULL, &e));
    ASSERT_OK(store_template_resolve(s, "web:default", &t, NULL, &e));

    /* A second build tagged v2 from the start: v2 waits for it, default stays on b1. */
    const char *tags[] = { "v2", NULL };
    request(s, "ignored", "web", "b2", 2000, tags, id);
    ASSERT_EQ(store_template_resolve(s, "web:v2", &t, &b, &e), -EAGAIN);
    ASSERT_OK(store_template_resolve(s, "web", &t, &b, &e));
    ASSERT_STREQ(b.id, "b1");
    store_build_release(&b);
    ASSERT_EQ(store_template_resolve(s, "web:v9", &t, &b, &e), -ENOENT);

    ASSERT_OK(store_build_finish(s, "b2", STORE_BUILD_READY, "[]", NULL, NULL, NULL, &e));
    ASSERT_OK(store_template_resolve(s, "web:v2", &t, &b, &e));
    ASSERT_STREQ(b.id, "b2");
    store_build_release(&b);
    ASSERT_OK(store_template_resolve(s, "web", &t, &b, &e));
    ASSERT_STREQ(b.id, "b2");
    store_build_release(&b);

    /* A failed third build leaves default where it was. */
    request(s, "ignored", "web", "b3", 3000, NULL, id);
    ASSERT_OK(store_build_finish(s, "b3", STORE_BUILD_ERROR, NULL, NULL, "exit status 1", "3", &e));
    ASSERT_OK(store_build_get(s, "tpl1", "b3", &b, &e));
    ASSERT_EQ(b.status, STORE_BUILD_ERROR);
    ASSERT_STREQ(b.reason, "exit status 1");
    ASSERT_STREQ(b.reason_step, "3");
    ASSERT_TRUE(b.finished_at_ms > 0);
    store_build_release(&b);
    ASSERT_OK(store_template_resolve(s, "web", &t, &b, &e));
    ASSERT_STREQ(b.id, "b2");
    store_build_release(&b);

    ASSERT_EQ(store_build_finish(s, "nope", STORE_BUILD_READY, NULL, NULL, NULL, NULL, &e), -ENOENT);
    store_free(s);
}

TEST(a_template_whose_only_build_failed_is_not_found)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);
    ASSERT_OK(store_build_set_status(s, "b1", STORE_BUILD_ERROR, &e));
    ASSERT_EQ(store_template_resolve(s, "web", NULL, NULL, &e), -ENOENT);
    ASSERT_TRUE(strstr(e.msg, "no ready build") != NULL);
    store_free(s);
}

TEST(tags)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1], other[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);
    request(s, "tpl2", "db", "b9", 1000, NULL, other);
    ASSERT_OK(store_tag_set(s, "tpl1", "prod", "b1", &e));
    ASSERT_OK(store_tag_set(s, "tpl1", "prod", "b1", &e));          /* again: moved onto itself */
    ASSERT_EQ(store_tag_set(s, "tpl1", "prod", "b9", &e), -ENOENT); /* not a build of tpl1 */
    ASSERT_EQ(store_tag_set(s, "tpl1", "prod", "nope", &e), -ENOENT);
    ASSERT_OK(store_tag_set(s, "tpl1", "stage", "b1", &e));
    struct strs c = { 0 };
    ASSERT_OK(store_tag_list(s, "tpl1", collect_tag, &c, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_OK(store_tag_remove(s, "tpl1", "prod", &e));
    ASSERT_EQ(store_tag_remove(s, "tpl1", "prod", &e), -ENOENT);
    c.n = 0;
    ASSERT_OK(store_tag_list(s, "tpl1", collect_tag, &c, &e));
    ASSERT_EQ(c.n, 1);
    ASSERT_STREQ(c.v[0], "stage");
    ASSERT_STREQ(c.w[0], "b1");
    store_free(s);
}

TEST(delete_takes_everything_with_it)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    const char *tags[] = { "v1", NULL };
    request(s, "tpl1", "web", "b1", 1000, tags, id);
    ASSERT_OK(store_build_log_append(s, "b1", 1, "info", "hello", NULL, &e));
    ASSERT_OK(store_template_delete(s, "tpl1", &e));
    ASSERT_EQ(store_template_delete(s, "tpl1", &e), -ENOENT);
    char got[STORE_TEMPLATE_ID_MAX + 1];
    ASSERT_EQ(store_template_name_lookup(s, "web", got, &e), -ENOENT);
    struct store_build b;
    ASSERT_EQ(store_build_get(s, NULL, "b1", &b, &e), -ENOENT);
    struct strs c = { 0 };
    ASSERT_OK(store_tag_list(s, "tpl1", collect_tag, &c, &e));
    ASSERT_EQ(c.n, 0);
    ASSERT_EQ(store_build_log_append(s, "b1", 2, "info", "late", NULL, &e), -ENOENT);
    /* The name is free again. */
    request(s, "tpl2", "web", "b2", 2000, NULL, id);
    ASSERT_STREQ(id, "tpl2");
    store_free(s);
}

TEST(public_and_spawned)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);
    ASSERT_OK(store_template_set_public(s, "tpl1", true, &e));
    ASSERT_OK(store_template_spawned(s, "tpl1", 1, 5000, &e));
    ASSERT_OK(store_template_spawned(s, "tpl1", 3, 4000, &e));
    struct store_template t;
    ASSERT_OK(store_template_get(s, "tpl1", &t, &e));
    ASSERT_TRUE(t.public);
    ASSERT_EQ(t.spawn_count, 4);
    ASSERT_EQ(t.last_spawned_at_ms, 5000);
    ASSERT_TRUE(t.updated_at_ms > 1000);
    ASSERT_EQ(store_template_set_public(s, "nope", true, &e), -ENOENT);
    ASSERT_EQ(store_template_spawned(s, "nope", 1, 1, &e), -ENOENT);
    store_free(s);
}

struct logs {
    int n;
    char first[64];
    char last[64];
    char last_level[8];
    bool last_step_null;
};

static int collect_log(int64_t at, const char *level, const char *message, const char *step, void *ud)
{
    struct logs *l = ud;
    if (l->n++ == 0)
        snprintf(l->first, sizeof(l->first), "%s", message);
    snprintf(l->last, sizeof(l->last), "%s", message);
    snprintf(l->last_level, sizeof(l->last_level), "%s", level);
    l->last_step_null = step == NULL;
    return 0;
}

TEST(build_logs_page_filter_and_cap)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);
    ASSERT_EQ(store_build_log_append(s, "nope", 1, "info", "x", NULL, &e), -ENOENT);
    ASSERT_OK(store_build_log_append(s, "b1", 1, "debug", "m0", NULL, &e));
    ASSERT_OK(store_build_log_append(s, "b1", 2, "info", "m1", "1", &e));
    ASSERT_OK(store_build_log_append(s, "b1", 3, "error", "m2", "2", &e));

    struct logs l = { 0 };
    ASSERT_OK(store_build_log_read(s, "b1", 1, 100, collect_log, &l, &e));
    ASSERT_EQ(l.n, 2);
    ASSERT_STREQ(l.first, "m1");
    ASSERT_STREQ(l.last, "m2");
    ASSERT_FALSE(l.last_step_null);
    l = (struct logs){ 0 };
    ASSERT_OK(store_build_log_read(s, "b1", 0, 1, collect_log, &l, &e));
    ASSERT_EQ(l.n, 1);
    ASSERT_STREQ(l.first, "m0");
    ASSERT_TRUE(l.last_step_null);
    l = (struct logs){ 0 };
    ASSERT_OK(store_build_log_read(s, "b1", 3, 100, collect_log, &l, &e));
    ASSERT_EQ(l.n, 0);
    /* The level filter counts the offset among the entries it keeps. */
    l = (struct logs){ 0 };
    ASSERT_OK(store_build_log_read_level(s, "b1", "info", 1, 100, collect_log, &l, &e));
    ASSERT_EQ(l.n, 1);
    ASSERT_STREQ(l.first, "m2");
    ASSERT_EQ(store_build_log_read_level(s, "b1", "loud", 0, 100, collect_log, &l, &e), -EINVAL);

    for (int i = 3; i < STORE_BUILD_LOG_MAX + 50; i++) {
        char m[32];
        snprintf(m, sizeof(m), "m%d", i);
        ASSERT_OK(store_build_log_append(s, "b1", i, "info", m, NULL, &e));
    }
    l = (struct logs){ 0 };
    ASSERT_OK(store_build_log_read(s, "b1", STORE_BUILD_LOG_MAX - 2, 100, collect_log, &l, &e));
    ASSERT_EQ(l.n, 2);
    ASSERT_STREQ(l.first, "m9998");
    ASSERT_TRUE(strstr(l.last, "truncated") != NULL);
    ASSERT_STREQ(l.last_level, "warn");
    store_free(s);
}

TEST(layers_in_use)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "tpl1", "web", "b1", 1000, NULL, id);
    request(s, "tpl1", "web", "b2", 2000, NULL, id);
    request(s, "tpl3", "bad", "b3", 3000, NULL, id);
    ASSERT_OK(store_build_finish(
        s, "b1", STORE_BUILD_READY,
        "[{\"layer\":\"top1\",\"target\":\"/\"},{\"layer\":\"host-usr\",\"target\":\"/usr\"}]", NULL, NULL,
        NULL, &e));
    ASSERT_OK(store_build_finish(
        s, "b2", STORE_BUILD_READY,
        "[{\"layer\":\"top2\",\"target\":\"/\"},{\"layer\":\"host-usr\",\"target\":\"/usr\"}]", NULL, NULL,
        NULL, &e));
    ASSERT_OK(store_build_finish(s, "b3", STORE_BUILD_ERROR, "not json", NULL, "x", NULL, &e));
    struct strs c = { 0 };
    ASSERT_OK(store_build_layers_in_use(s, collect_layer, &c, &e));
    ASSERT_EQ(c.n, 3);
    ASSERT_STREQ(c.v[0], "host-usr");
    ASSERT_STREQ(c.v[1], "top1");
    ASSERT_STREQ(c.v[2], "top2");
    store_free(s);
}

TEST(builtin_is_idempotent)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    const char *layers =
        "[{\"layer\":\"host-base\",\"target\":\"/\"},{\"layer\":\"host-usr\",\"target\":\"/usr\"}]";
    ASSERT_OK(store_template_ensure_builtin(s, "base", "base", layers, "{\"user\":\"user\"}", "0.6.13", &e));
    ASSERT_OK(store_template_ensure_builtin(s, "base", "base", layers, "{\"user\":\"user\"}", "0.6.13", &e));
    struct store_template t;
    struct store_build b;
    ASSERT_OK(store_template_resolve(s, "base", &t, &b, &e));
    ASSERT_STREQ(t.id, "base");
    ASSERT_STREQ(b.layers_json, layers);
    ASSERT_STREQ(b.envd_version, "0.6.13");
    store_build_release(&b);
    struct strs c = { 0 };
    ASSERT_OK(store_build_list(s, "base", collect_build, &c, &e));
    ASSERT_EQ(c.n, 1);
    c.n = 0;
    ASSERT_OK(store_template_names(s, "base", collect_name, &c, &e));
    ASSERT_EQ(c.n, 1);
    ASSERT_STREQ(c.v[0], "base");
    store_free(s);
}

static int take_all(const struct store_template *t, void *ud)
{
    struct strs *c = ud;
    snprintf(c->v[c->n++], sizeof(c->v[0]), "%s", t->id);
    return 1;
}

TEST(list_pages_and_kinds)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    request(s, "t1", "one", "b1", 1000, NULL, id);
    request(s, "t2", "two", "b2", 2000, NULL, id);
    request(s, "t3", "three", "b3", 2000, NULL, id);
    struct store_template snap = { .is_snapshot = true, .created_at_ms = 4000 };
    snprintf(snap.id, sizeof(snap.id), "s1");
    snprintf(snap.source_sandbox, sizeof(snap.source_sandbox), "sbx1");
    ASSERT_OK(store_template_insert(s, &snap, &e));
    ASSERT_EQ(store_template_insert(s, &snap, &e), -EEXIST);
    snprintf(snap.id, sizeof(snap.id), "s2");
    snprintf(snap.source_sandbox, sizeof(snap.source_sandbox), "sbx2");
    ASSERT_OK(store_template_insert(s, &snap, &e));

    struct store_template_query q = { 0 };
    char next[STORE_CURSOR_MAX];
    struct strs c = { 0 };
    ASSERT_OK(store_template_list(s, &q, 2, take_all, &c, next, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.v[0], "t3");
    ASSERT_STREQ(c.v[1], "t2");
    ASSERT_TRUE(next[0] != '\0');
    q.cursor = next;
    char next2[STORE_CURSOR_MAX];
    ASSERT_OK(store_template_list(s, &q, 2, take_all, &c, next2, &e));
    ASSERT_EQ(c.n, 3);
    ASSERT_STREQ(c.v[2], "t1");
    ASSERT_STREQ(next2, "");

    struct store_template_query qs = { .snapshots = true };
    struct strs cs = { 0 };
    ASSERT_OK(store_template_list(s, &qs, 10, take_all, &cs, next, &e));
    ASSERT_EQ(cs.n, 2);
    qs.source_sandbox = "sbx1";
    cs.n = 0;
    ASSERT_OK(store_template_list(s, &qs, 10, take_all, &cs, next, &e));
    ASSERT_EQ(cs.n, 1);
    ASSERT_STREQ(cs.v[0], "s1");

    q.cursor = "garbage";
    ASSERT_EQ(store_template_list(s, &q, 2, take_all, &c, next, &e), -EINVAL);
    store_free(s);
}
