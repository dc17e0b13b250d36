/* inotify masks to EventType in envd's order, and the FilesystemEvent JSON. */
#include <stdlib.h>
#include <sys/inotify.h>

#include "common/json-util.h"
#include "envd/fs/fs.h"
#include "tap.h"

static size_t map(uint32_t mask, enum fs_event_type out[5])
{
    return fs_event_types_from_mask(mask, out);
}

TEST(mask_to_event_types)
{
    enum fs_event_type t[5];
    ASSERT_EQ(map(IN_CREATE, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_CREATE);
    ASSERT_EQ(map(IN_MOVED_TO, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_CREATE);
    ASSERT_EQ(map(IN_MODIFY, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_WRITE);
    ASSERT_EQ(map(IN_DELETE, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_REMOVE);
    ASSERT_EQ(map(IN_DELETE_SELF, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_REMOVE);
    ASSERT_EQ(map(IN_MOVED_FROM, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_RENAME);
    ASSERT_EQ(map(IN_MOVE_SELF, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_RENAME);
    ASSERT_EQ(map(IN_ATTRIB, t), 1u);
    ASSERT_EQ(t[0], FS_EVENT_CHMOD);
    ASSERT_EQ(map(IN_CREATE | IN_ISDIR, t), 1u);
    ASSERT_EQ(map(IN_ACCESS | IN_OPEN | IN_CLOSE_WRITE, t), 0u);
    /* Several in one mask come out as create, rename, chmod, write, remove. */
    ASSERT_EQ(map(IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_CREATE, t), 5u);
    ASSERT_EQ(t[0], FS_EVENT_CREATE);
    ASSERT_EQ(t[1], FS_EVENT_RENAME);
    ASSERT_EQ(t[2], FS_EVENT_CHMOD);
    ASSERT_EQ(t[3], FS_EVENT_WRITE);
    ASSERT_EQ(t[4], FS_EVENT_REMOVE);
}

TEST(event_json)
{
    json_t *entry = json_pack("{s:s}", "name", "a");
    json_t *e = fs_event_json("sub/a", FS_EVENT_CREATE, entry);
    char *s = json_dump_compact(e, NULL);
    ASSERT_STREQ(s, "{\"name\":\"sub/a\",\"type\":\"EVENT_TYPE_CREATE\",\"entry\":{\"name\":\"a\"}}");
    free(s);
    json_decref(e);
    e = fs_event_json("a", FS_EVENT_REMOVE, NULL);
    s = json_dump_compact(e, NULL);
    ASSERT_STREQ(s, "{\"name\":\"a\",\"type\":\"EVENT_TYPE_REMOVE\"}");
    free(s);
    json_decref(e);
    json_decref(entry);
    ASSERT_STREQ(fs_event_type_to_string(FS_EVENT_RENAME), "EVENT_TYPE_RENAME");
    ASSERT_STREQ(fs_event_type_to_string(FS_EVENT_CHMOD), "EVENT_TYPE_CHMOD");
    ASSERT_STREQ(fs_event_type_to_string(FS_EVENT_WRITE), "EVENT_TYPE_WRITE");
}
