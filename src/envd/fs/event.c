/* inotify masks to filesystem.EventType, as fsnotify (which envd uses) maps them: CREATE for
 * IN_CREATE/IN_MOVED_TO, REMOVE for IN_DELETE/IN_DELETE_SELF, WRITE for IN_MODIFY, RENAME for
 * IN_MOVED_FROM/IN_MOVE_SELF, CHMOD for IN_ATTRIB; one mask may carry several. */
#include <sys/inotify.h>

#include "envd/fs/fs.h"
#include "common/banned.h"

const char *fs_event_type_to_string(enum fs_event_type t)
{
    switch (t) {
    case FS_EVENT_CREATE:
        return "EVENT_TYPE_CREATE";
    case FS_EVENT_WRITE:
        return "EVENT_TYPE_WRITE";
    case FS_EVENT_REMOVE:
        return "EVENT_TYPE_REMOVE";
    case FS_EVENT_RENAME:
        return "EVENT_TYPE_RENAME";
    case FS_EVENT_CHMOD:
        return "EVENT_TYPE_CHMOD";
    default:
        return "EVENT_TYPE_UNSPECIFIED";
    }
}

size_t fs_event_types_from_mask(uint32_t mask, enum fs_event_type out[5])
{
    size_t n = 0;
    if (mask & (IN_CREATE | IN_MOVED_TO))
        out[n++] = FS_EVENT_CREATE;
    if (mask & (IN_MOVE_SELF | IN_MOVED_FROM))
        out[n++] = FS_EVENT_RENAME;
    if (mask & IN_ATTRIB)
        out[n++] = FS_EVENT_CHMOD;
    if (mask & IN_MODIFY)
        out[n++] = FS_EVENT_WRITE;
    if (mask & (IN_DELETE | IN_DELETE_SELF))
        out[n++] = FS_EVENT_REMOVE;
    return n;
}

json_t *fs_event_json(const char *name, enum fs_event_type type, json_t *entry)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name) ?: json_string("\xef\xbf\xbd"));
    if (type != FS_EVENT_UNSPECIFIED)
        json_object_set_new(o, "type", json_string(fs_event_type_to_string(type)));
    if (entry)
        json_object_set(o, "entry", entry);
    return o;
}
