/* The fork server's own process: confinement, Python, and the request loop (forkserver.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/net-util.h"
#include "forkserver/forkserver-internal.h"
#include "runtime/runtime.h"

#include "common/banned.h"

#define BUNDLE_MOUNT "/opt/hutch"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67 /* Linux 6.4; Debian 12's headers are older */
#endif

static int mount_setattr_rdonly(const char *path)
{
    /* Not nodev: /dev/null and /dev/urandom are what Python opens there. */
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID };
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof(attr));
}

static int drop_capabilities(struct error_record *err)
{
    for (int cap = 0; cap <= 63; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0)
            break;
        if (r == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return error_set_errno(err, errno, "PR_CAPBSET_DROP %d", cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return error_set_errno(err, errno, "PR_CAP_AMBIENT_CLEAR_ALL");
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2] = { 0 };
    if (syscall(SYS_capset, &hdr, data) < 0)
        return error_set_errno(err, errno, "capset");
    return 0;
}

int forkserver_confine(const struct forkserver_config *cfg, struct error_record *err)
{
    /* Whatever the starting thread had: Python's handlers and the kernels' need the defaults. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    /* Ends with hutch serve through its socket's EOF (PR_SET_PDEATHSIG would follow the thread
     * that started it, any request thread). Non-dumpable: host root without capabilities still
     * must not be ptraced or have its memory read. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* A kernel's process outlives the child that forked it into the sandbox: it becomes ours
     * to reap (its parent is outside the sandbox, as for exec()'s processes), not the host
     * init's. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* A detached copy of the bundle, made while the bundle's mount is in this namespace. */
    int tree = (int)syscall(SYS_open_tree, cfg->bundle_fd, "",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (tree < 0)
        return error_set_errno(err, errno, "open_tree of the bundle");
    close(cfg->bundle_fd);
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        return error_set_errno(err, errno, "unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return error_set_errno(err, errno, "making mounts private");
    /* The bundle where sandboxes see it, so that module paths and tracebacks agree. */
    if (mount("tmpfs", "/opt", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") < 0)
        return error_set_errno(err, errno, "tmpfs on /opt");
    if (mkdir(BUNDLE_MOUNT, 0755) < 0)
        return error_set_errno(err, errno, "mkdir " BUNDLE_MOUNT);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, BUNDLE_MOUNT, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return error_set_errno(err, errno, "mounting the bundle on " BUNDLE_MOUNT);
    close(tree);
    if (mount_setattr_rdonly("/") < 0)
        return error_set_errno(err, errno, "making / read-only");
    /* Scratch for imports that want a writable place (matplotlib's config directory). */
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m") < 0)
        return error_set_errno(err, errno, "tmpfs on /tmp");
    if (chdir("/") < 0)
        return error_set_errno(err, errno, "chdir /");
    /* uid 0 stays: it owns the sandboxes' user namespaces, which is all joining them needs. */
    return drop_capabilities(err);
}

static PyObject *helper_module;

static int python_error(struct error_record *err, const char *what)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    error_set(err, EIO, "%s: %s", what, msg ? msg : "unknown Python error");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return -EIO;
}

int forkserver_python_init(const struct forkserver_config *cfg, struct error_record *err)
{
    /* A clean environment: nothing of the host's reaches the imports or, later, the kernels. */
    clearenv();
    setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
    setenv("LANG", "C.UTF-8", 1);
    setenv("HOME", "/nonexistent", 1);
    setenv("MPLCONFIGDIR", "/tmp/matplotlib", 1);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1", 1);

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    config.write_bytecode = 0;
    PyStatus st = PyConfig_SetString(&config, &config.program_name, L"/usr/bin/python3");
    if (!PyStatus_Exception(st)) {
        char *argv[] = { (char *)"kernel-forkserver", NULL };
        st = PyConfig_SetBytesArgv(&config, 1, argv);
    }
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st))
        return error_set(err, EIO, "starting Python: %s", st.err_msg ? st.err_msg : "failed");

    PyObject *path = PySys_GetObject("path"); /* borrowed */
    PyObject *lib = PyUnicode_FromString(cfg->python_lib);
    if (!path || !lib || PyList_Insert(path, 0, lib) < 0) {
        Py_XDECREF(lib);
        return python_error(err, "sys.path");
    }
    Py_DECREF(lib);
    helper_module = PyImport_ImportModule("hutch_forkserver");
    if (!helper_module)
        return python_error(err, "import hutch_forkserver");
    PyObject *r = PyObject_CallMethod(helper_module, "preload", "s", cfg->preload ? cfg->preload : "");
    if (!r)
        return python_error(err, "preload");
    Py_DECREF(r);
    /* The seccomp filter every kernel loads (runtime_ns_join_finish), compiled here once into
     * the runtime's per-process cache: each child compiling it (libseccomp's rule database and
     * BPF generation, all on the heap) wrote into free chunks all over the heap it shares with
     * us, and copied 5.9 MiB of its pages. */
    int rc = runtime_ns_join_prepare(err);
    if (rc < 0)
        return rc;
    /* What each kernel copies on write is mostly the same in every kernel (reference counts
     * that ipykernel's start moved the same way): KSM can merge those copies again. The flag
     * is the process's and passes to every child forked from here; the sandboxes' seccomp
     * filter keeps their code from changing it. */
    if (cfg->memory_merge && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) < 0)
        return error_set_errno(err, errno, "PR_SET_MEMORY_MERGE");
    return 0;
}

int forkserver_run_kernel(const char *dir, char *const *env, const char *cwd, struct error_record *err)
{
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && env[i]; i++) {
        PyObject *s = PyUnicode_DecodeFSDefault(env[i]);
        if (!s || PyList_Append(list, s) < 0) {
            Py_XDECREF(s);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(s);
    }
    if (!list)
        return python_error(err, "env");
    PyObject *r = PyObject_CallMethod(helper_module, "run_kernel", "sOs", dir, list, cwd);
    Py_DECREF(list);
    if (!r) {
        if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
            PyErr_Clear();
            return 0;
        }
        PyErr_Print();
        return -EIO;
    }
    Py_DECREF(r);
    return 0;
}

static void reap_children(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

int forkserver_serve(const struct forkserver_config *cfg, struct error_record *err)
{
    if (send(cfg->sock, "ready", 5, MSG_NOSIGNAL) != 5)
        return error_set_errno(err, errno, "saying ready");
    static char buf[FORKSERVER_REQUEST_MAX];
    for (;;) {
        struct pollfd p = { .fd = cfg->sock, .events = POLLIN };
        int pr = poll(&p, 1, 1000);
        reap_children();
        if (pr < 0 && errno != EINTR)
            return error_set_errno(err, errno, "poll");
        if (pr <= 0)
            continue;
        int fds[FORKSERVER_MAX_FDS];
        size_t nfds = 0;
        ssize_t n = net_recv_fds(cfg->sock, buf, sizeof(buf), fds, ARRAY_SIZE(fds), &nfds);
        if (n == 0)
            return 0;
        if (n < 0 && n != -EBADMSG) {
            close_fds(fds, nfds);
            if (n == -EAGAIN)
                continue;
            return error_set_errno(err, (int)-n, "recvmsg");
        }
        if (n < 0 || nfds < 3) {
            if (nfds > 0)
                forkserver_reply_error(fds[0], EINVAL, "malformed request");
            close_fds(fds, nfds);
            explicit_bzero(buf, sizeof(buf));
            continue;
        }
        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            forkserver_child(cfg->sock, buf, (size_t)n, fds, nfds);
        }
        PyOS_AfterFork_Parent();
        if (pid < 0)
            forkserver_reply_error(fds[0], errno, "fork failed");
        /* The request may carry a sandbox's env vars: no later child may inherit them. */
        explicit_bzero(buf, (size_t)n);
        close_fds(fds, nfds);
    }
}
