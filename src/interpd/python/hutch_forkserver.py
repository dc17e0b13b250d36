"""The Python half of hutch's kernel fork server (src/forkserver/).

The fork server imports what every code-interpreter kernel needs once, freezes those objects
out of the garbage collector's reach (gc.freeze: collections then never write to their pages),
and forks one child per sandbox. The C side moves the child into the sandbox (cgroup,
namespaces, identity, seccomp) and then calls run_kernel(), which resets what the fork server's
process state says about the host and starts an ipykernel kernel on ipc:// sockets in a private
directory. interpd adopts that kernel (INTERPD_ADOPT_KERNEL, kernel_adopt in src/interpd/kernel.c).

The kernel's objects (IPKernelApp, IPythonKernel, its shell with its magics, completer,
formatters, extensions) are built once in the fork server too (_prebuild): CPython 3.11 writes
the reference count of every object that code touches, so each line a child runs copies the
pages around what it touches, and building those objects in every child copied about 4 MiB of
the fork server's pages that the kernel's later work does not touch. What depends on the
sandbox is done in the child (_start_prebuilt): the profile and its configuration, the history
database and its thread, the session and its HMAC key, the kernel's id, every socket and
thread, the startup files. A sandbox whose IPython configuration differs from the fork server's
(a config file in its profile or its /etc/ipython) gets a kernel built from scratch, as without
the prebuilt objects.

Nothing here may keep a file open in the fork server, or start a thread, or create an event
loop or a zmq context: every child inherits them.
"""

import gc
import importlib
import json
import os
import sys
import threading
import time
import uuid

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
    _prebuild()
    gc.freeze()


# The versions whose IPKernelApp.initialize(), IPythonKernel.__init__() and
# InteractiveShell.__init__() _prebuild and _start_prebuilt were written against (Debian 12's).
_PREBUILT_VERSIONS = {"ipykernel": "6.17.", "IPython": "8.5."}
# (app, config it was built with) once _prebuild succeeded.
_prebuilt = None


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def _prebuild():
    """Builds the kernel's objects that need no socket, thread, file or path of the sandbox.

    The fork server's own profile (in its private /tmp) stands in for the sandbox's until the
    child has its own. A thread, an fd or an event loop left behind would be every child's:
    that is an error (the fork server does not start; sandboxes start their own kernels)."""
    global _prebuilt
    for name, prefix in _PREBUILT_VERSIONS.items():
        if not sys.modules[name].__version__.startswith(prefix):
            return
    import asyncio
    import tempfile

    from IPython.core.application import BaseIPythonApplication
    from ipykernel import ipkernel
    from ipykernel.kernelapp import IPKernelApp

    fds = _open_fds()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="ipython-", dir="/tmp")
    sys.argv = ["ipykernel_launcher"]
    app = IPKernelApp.instance(transport="ipc")
    BaseIPythonApplication.initialize(app, [])
    # Configuration of the host's (its /etc/ipython) must not reach the kernels.
    if app.config:
        IPKernelApp.clear_instance()
        return
    app.init_pdb()
    # The history database and its saving thread are the sandbox's (_start_prebuilt); the
    # debugger needs the kernel's streams.
    app.config.HistoryManager.enabled = False
    debugpy = ipkernel._is_debugpy_available
    ipkernel._is_debugpy_available = False
    try:
        app.kernel = app.kernel_class.instance(
            parent=app, log=app.log, profile_dir=app.profile_dir, user_ns=app.user_ns
        )
    finally:
        ipkernel._is_debugpy_available = debugpy
        del app.config["HistoryManager"]
    app.init_shell()
    app.init_extensions()
    del os.environ["IPYTHONDIR"]
    if threading.active_count() != 1 or _open_fds() != fds:
        raise RuntimeError("building the kernel left a thread or a file open")
    loop = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    if asyncio.events._get_running_loop() is not None or loop is not None:
        raise RuntimeError("building the kernel created an event loop")
    _prebuilt = (app, app.config.copy())


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
    # Cached by the first gettempdir() (TMPDIR is the sandbox's).
    import tempfile

    tempfile.tempdir = None
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
    app = _sandbox_app(conn, os.path.join(directory, "k"))
    if app is not None:
        _start_prebuilt(app)
    else:
        app = IPKernelApp.instance(connection_file=conn, transport="ipc", ip=os.path.join(directory, "k"))
        app.initialize([])
    with open(os.path.join(directory, "pid.tmp"), "w") as f:
        json.dump({"pid": os.getpid()}, f)
    os.rename(os.path.join(directory, "pid.tmp"), os.path.join(directory, "pid"))
    os.rename(conn, os.path.join(directory, "connection.json"))
    app.connection_file = os.path.join(directory, "connection.json")
    app.start()


def _sandbox_app(connection_file, ip):
    """The prebuilt IPKernelApp with the sandbox's profile, or None (and no prebuilt objects
    left) where there is none or the sandbox's IPython configuration is not the one it was
    built with."""
    if _prebuilt is None:
        return None
    app, config = _prebuilt
    from IPython.paths import get_ipython_dir

    app.connection_file = connection_file
    app.ip = ip
    app.profile_dir = None
    app.config_file_paths = []
    app.ipython_dir = get_ipython_dir()
    app.init_profile_dir()
    app.init_config_files()
    app.load_config_file()
    if app.config == config:
        return app
    import atexit

    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.zmqshell import ZMQInteractiveShell

    atexit.unregister(app.kernel.shell.atexit_operations)
    for cls in (IPKernelApp, IPythonKernel, ZMQInteractiveShell):
        cls.clear_instance()
    return None


def _start_prebuilt(app):
    """What IPKernelApp.initialize() does after BaseIPythonApplication.initialize(), for an
    app whose kernel and shell _prebuild made, plus what those took from the fork server's
    process (its profile, HOME, cwd, environment) redone for the sandbox."""
    from ipykernel import ipkernel
    from IPython.utils.path import get_home_dir
    from pickleshare import PickleShareDB
    from zmq.eventloop.zmqstream import ZMQStream

    kernel = app.kernel
    shell = kernel.shell
    shell.ipython_dir = app.ipython_dir
    shell.profile_dir = kernel.profile_dir = app.profile_dir
    shell.db = PickleShareDB(os.path.join(app.profile_dir.location, "db"))
    shell.home_dir = shell.logger.home_dir = get_home_dir()
    shell.starting_dir = os.getcwd()
    shell.init_environment()
    shell.init_virtualenv()
    old_history = shell.history_manager
    shell.init_history()
    shell.configurables.remove(old_history)
    shell.init_user_ns()  # In, Out, _ih, _oh, _dh: the new history's

    app.init_blackhole()
    app.init_connection_file()
    app.init_poller()
    app.init_sockets()
    app.init_heartbeat()
    app.write_connection_file()
    app.log_connection_info()
    app.init_io()
    shell.save_sys_module_state()
    try:
        app.init_signal()
    except Exception:
        app.log.error("Unable to initialize signal:", exc_info=True)

    # IPKernelApp.init_kernel() and IPythonKernel.__init__(), for an existing kernel.
    shell_stream = ZMQStream(app.shell_socket)
    control_stream = ZMQStream(app.control_socket, app.control_thread.io_loop)
    debugpy_stream = ZMQStream(app.debugpy_socket, app.control_thread.io_loop)
    app.control_thread.start()
    kernel.ident = str(uuid.uuid4())
    kernel.session = app.session
    kernel.control_stream = control_stream
    kernel.debugpy_stream = debugpy_stream
    kernel.debug_shell_socket = app.debug_shell_socket
    kernel.shell_stream = shell_stream
    kernel.control_thread = app.control_thread
    kernel.iopub_thread = app.iopub_thread
    kernel.iopub_socket = app.iopub_socket
    kernel.stdin_socket = app.stdin_socket
    if ipkernel._is_debugpy_available:
        kernel.debugger = ipkernel.Debugger(
            kernel.log,
            debugpy_stream,
            kernel._publish_debug_event,
            app.debug_shell_socket,
            app.session,
            kernel.debug_just_my_code,
        )
    shell.displayhook.session = app.session
    shell.displayhook.pub_socket = app.iopub_socket
    shell.displayhook.topic = kernel._topic("execute_result")
    shell.display_pub.session = app.session
    shell.display_pub.pub_socket = app.iopub_socket
    kernel.record_ports({name + "_port": port for name, port in app._ports.items()})
    app.displayhook.get_execution_count = lambda: kernel.execution_count

    app.init_path()
    app.init_gui_pylab()
    app.init_code()
    sys.stdout.flush()
    sys.stderr.flush()
