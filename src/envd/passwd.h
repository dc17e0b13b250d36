/* envd's user database (passwd.c): /etc/passwd and /etc/group read directly, not through NSS,
 * as E2B's envd does. Both functions block on file reads, allocate at most one line's buffer
 * (1 MiB at most; longer lines are skipped; glibc's parser of the files format) and keep no state: safe from
 * any request thread. */
#pragma once

#include <stddef.h>

#include "envd/envd.h"

/* Finds name in the passwd file and its groups: the primary one first, then those of the group
 * file that list it, at most ARRAY_SIZE(ret->groups) (the first ones). Returns 0, -ENOENT when
 * the user is not there, -ENAMETOOLONG when the name or home does not fit ret, or -errno when
 * the passwd file cannot be read (a group file that cannot be read leaves the primary group). */
int envd_passwd_lookup(const char *passwd, const char *group, const char *name, struct envd_user *ret);

/* Copies the name of the first entry with uid in a passwd file (gid in a group file) into out
 * (size bytes). Returns 0, -ENOENT, -ENAMETOOLONG or -errno. */
int envd_passwd_user_name(const char *passwd, unsigned uid, char *out, size_t size);
int envd_passwd_group_name(const char *group, unsigned gid, char *out, size_t size);
