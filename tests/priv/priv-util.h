/* Fixtures shared by the privileged runtime tests and the attack suite: a `host` base template
 * built once per test under a temporary directory, the static probe in a third layer at
 * /opt/hutch, a default spec, and a helper that runs a
 * command in a fresh sandbox and collects its output and wait status. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "runtime/runtime.h"

#define PRIV_CGROUP_PARENT "hutch-test"

struct priv_env {
    char dir[256];       /* temporary directory holding everything below */
    char tpl[300];       /* base template layer */
    char probe_dir[300]; /* layer at /opt/hutch holding the probe */
    struct runtime_layer layers[3];
    struct runtime_config cfg;
};

/* Skips the test unless root with the kernel features needed. Builds the template. The test
 * continues in a forked child; the calling process waits for it and cleans up after it, even
 * when an assertion killed it (see priv_on_cleanup). */
void priv_env_init(struct priv_env *env);
/* Registers a shell command the guard runs after the test (fixtures outside the runtime). */
void priv_on_cleanup(const char *cmd);
void priv_env_release(struct priv_env *env);

/* A spec with sane defaults: the three layers, 256 MiB memory, 64 MiB disk, 256 pids, uid 0,
 * offline, a unique id and slot. argv is borrowed. */
void priv_spec_init(struct priv_env *env, struct runtime_spec *spec, const char *const *argv);

struct priv_result {
    int create_r;
    int start_r;
    struct error_record err;
    int status; /* wait status */
    char out[65536];
    size_t out_len;
};

/* create + start + wait (up to 60 s) + destroy, capturing stdout and stderr together. */
void priv_run(struct priv_env *env, struct runtime_spec *spec, struct priv_result *res);

/* Reads what is available from fd within timeout_ms (until EOF or the buffer is full). */
size_t priv_read_all(int fd, char *buf, size_t size, int timeout_ms);
/* Reads until needle appears (or timeout); returns true when seen. */
bool priv_read_until(int fd, const char *needle, char *buf, size_t size, int timeout_ms);

/* Runs cmd with /bin/sh -c (test fixtures only, never the runtime); returns its exit status,
 * or -errno. */
int priv_sh(const char *cmd);

/* Host state snapshots for "nothing left behind". */
int priv_count_mounts(void);
int priv_count_loop_devices(void);
/* Number of live (non-zombie) host processes whose uid lies in [base, base + 65536). */
int priv_count_procs_in_range(uid_t base);
/* True on a host whose /sys/fs/cgroup is the cgroup v2 hierarchy alone (no v1 controllers). */
bool priv_cgroup2_only(void);
/* True when any cgroup directory of this sandbox id still exists (v1 controllers or v2). */
bool priv_cgroup_exists(const char *id);
/* Reads `file` of the sandbox's cgroup in a v1 controller ("memory", "cpu", ...) or in v2
 * ("unified", whether v2 is mounted at /sys/fs/cgroup/unified or at /sys/fs/cgroup); returns
 * its length or -errno. */
int priv_cgroup_read(const char *id, const char *controller, const char *file, char *buf, size_t size);
/* The host uid of slot's root. */
uid_t priv_slot_uid(const struct priv_env *env, unsigned slot);

/* Writes content to path (created or truncated, mode 0755); fails the test on error. */
void priv_write_file(const char *path, const char *content);
/* Writes a Python script (run with /usr/bin/python3 SCRIPT DIR) that prints one line per entry
 * below DIR, sorted: path, mode, owner, mtime, size and SHA-256 of files, symlink targets,
 * device numbers, and xattrs (sockets are left out; a name that readdir lists but lstat does not
 * find, as overlay shows a whiteout in a directory of a single lower layer, is marked). Two trees
 * print the same text when they look the same to a process. */
void priv_write_view_script(const char *path);
/* Reads a whole (small) file into buf, NUL-terminated; returns its length or -errno. */
ssize_t priv_read_file(const char *path, char *buf, size_t size);

#define PROBE "/opt/hutch/hutch-probe"
