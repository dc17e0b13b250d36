/* See orchestrator-internal.h: host-wide sandbox slots. A slot selects a sandbox's host uid/gid
 * range, so two sandboxes must never hold the same slot, even when they belong to different
 * `hutch serve` instances on one host. A slot is held by an open file description with an
 * exclusive flock on /run/hutch/slots/<n>: the kernel releases it when its holder dies, so a
 * crashed instance never strands slots and no cleanup is needed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define SLOTS_DIR ORCH_RUN_DIR "/slots"

int orch_slot_claim(unsigned max, unsigned *ret_slot, int *ret_fd, struct error_record *err)
{
    if ((mkdir(ORCH_RUN_DIR, 0755) < 0 && errno != EEXIST) || (mkdir(SLOTS_DIR, 0700) < 0 && errno != EEXIST))
        return error_set_errno(err, errno, "creating %s", SLOTS_DIR);
    for (unsigned i = 0; i < max; i++) {
        char path[64];
        snprintf(path, sizeof(path), SLOTS_DIR "/%u", i);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return error_set_errno(err, errno, "opening %s", path);
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            *ret_slot = i;
            *ret_fd = fd;
            return 0;
        }
        int e = errno;
        close(fd);
        if (e != EWOULDBLOCK)
            return error_set_errno(err, e, "locking %s", path);
    }
    return error_set(err, EAGAIN, "all %u sandbox slots of this host are in use", max);
}
