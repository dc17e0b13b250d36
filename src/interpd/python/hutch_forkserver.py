"""The Python half of hutch's kernel fork server (src/forkserver/).

The fork server imports what every code-interpreter kernel needs once, freezes those objects
out of the garbage collector's reach (gc.freeze: collections then never write to their pages),
and forks one child per sandbox. The C side moves the child into the sandbox (cgroup,
namespaces, identity, seccomp) and then calls run_kernel(), which resets what the fork server's
process state says about the host and starts an ipykernel kernel on ipc:// sockets in a private
directory. interpd adopts that kernel (INTERPD_ADOPT_KERNEL, kernel_adopt in src/interpd/kernel.c).

Nothing here may keep a file open in the fork server: every child inherits its fds.
"""

import gc
import importlib
import json
import os
import sys
import time

# What a code-interpreter kernel imports on its own at startup.
_KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "IPython.core.interactiveshell",
    "matplotlib_inline.backend_inline",
)


def preload(modules):
    """Imports the kernel's modules, then `modules` (comma-separated), then freezes the heap.

    No collection runs in the fork server (gc.disable first, as the gc module's documentation
    advises for fork servers): objects it freed would leave holes in its memory pages, which
    the children's own allocations would fill, copying those pages one by one."""
    gc.disable()
    # ipykernel sets the inline backend before the user's code imports matplotlib; matplotlib
    # reads it when imported, so it must be set before the fork server imports it.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name in _KERNEL_MODULES + tuple(m.strip() for m in modules.split(",") if m.strip()):
        importlib.import_module(name)
    gc.freeze()


def _reset_process_state(env):
    """What the fork server's process knows that belongs to the host or to every child alike."""
    gc.enable()
    os.environ.clear()
    os.environ.update(env)
    # The time zone was read from the fork server's /etc/localtime.
    time.tzset()
    # Seeded once at import: every child would draw the same numbers. (random reseeds itself
    # after a fork; numpy's global generator does not.)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
    mpl = sys.modules.get("matplotlib")
    if mpl is not None:
        # Cached paths of the fork server's configuration directory.
        for name in ("get_configdir", "get_cachedir"):
            cached = getattr(mpl, name, None)
            if hasattr(cached, "cache_clear"):
                cached.cache_clear()
    import site

    # The user's site-packages follows HOME, which the fork server did not have.
    site.USER_BASE = None
    site.USER_SITE = None
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site) and user_site not in sys.path:
        site.addsitedir(user_site)


def run_kernel(directory, env, cwd):
    """Starts the kernel (never returns). directory is created 0700 and gets kernel.json, the
    connection file ipykernel writes once its sockets are bound, published as connection.json
    (atomically, after `pid`) for interpd."""
    _reset_process_state(dict(e.split("=", 1) for e in env if "=" in e))
    os.chdir(cwd)
    os.mkdir(directory, 0o700)
    sys.argv = ["ipykernel_launcher"]
    from ipykernel.kernelapp import IPKernelApp

    conn = os.path.join(directory, "kernel.json")
    app = IPKernelApp.instance(connection_file=conn, transport="ipc", ip=os.path.join(directory, "k"))
    app.initialize([])
    with open(os.path.join(directory, "pid.tmp"), "w") as f:
        json.dump({"pid": os.getpid()}, f)
    os.rename(os.path.join(directory, "pid.tmp"), os.path.join(directory, "pid"))
    os.rename(conn, os.path.join(directory, "connection.json"))
    app.connection_file = os.path.join(directory, "connection.json")
    app.start()
