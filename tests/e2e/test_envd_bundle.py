"""The envd bundle (<state>/envd, built by `hutch serve`): envd with the host's shared objects and
dynamic loader, run in a root that holds nothing else, as in a sandbox of a foreign template."""
import base64
import os
import shutil
import signal
import subprocess
import time

import pytest

from envd_util import Envd, envd_path, envelope, free_port, start_request
from hutch_server import HutchServer

# ORCH_ENVD_ARGV_PREFIX (src/orchestrator/orchestrator-internal.h).
ARGV_PREFIX = ["/opt/hutch/lib/ld.so", "--inhibit-cache", "--library-path", "/opt/hutch/lib",
               "--argv0", "/opt/hutch/envd", "/opt/hutch/envd"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, chroot)")


@pytest.fixture(scope="module")
def bundle(bindir, tmp_path_factory):
    """The bundle of a real `hutch serve`, started twice: the second start replaces the first
    one's bundle."""
    state = tmp_path_factory.mktemp("bundle") / "state"
    for _ in range(2):
        s = HutchServer(bindir, state, free_port()).start()
        assert s.stop() == 0, s.log()
    assert not (state / "envd.new").exists()
    return state / "envd"


def listed_libraries(program=None):
    out = subprocess.run([str(program or envd_path()), "--list-libraries"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return out.splitlines()


def interpd_path():
    return envd_path().parent / "interpd"


def test_list_libraries_names_the_loader_first():
    libs = listed_libraries()
    assert libs and all(p.startswith("/") for p in libs)
    assert os.path.basename(libs[0]).startswith("ld-linux")
    names = [os.path.basename(p) for p in libs]
    # libmicrohttpd is linked statically where its archive exists (src/envd/meson.build).
    assert "libc.so.6" in names and "libjansson.so.4" in names
    assert not any("vdso" in n for n in names)
    assert len(set(names)) == len(names)


def test_bundle_holds_envd_and_what_it_loads(bundle):
    assert (bundle / "envd").read_bytes() == envd_path().read_bytes()
    assert os.access(bundle / "envd", os.X_OK)
    libs = listed_libraries()
    lib = bundle / "lib"
    names = {os.path.basename(p) for p in libs}
    # interpd, beside hutch, is bundled too: its objects share lib/, its helpers are in python/.
    if interpd_path().exists():
        assert (bundle / "interpd").read_bytes() == interpd_path().read_bytes()
        names |= {os.path.basename(p) for p in listed_libraries(interpd_path())}
        assert (bundle / "python" / "hutch_display.py").is_file()
    assert sorted(os.listdir(lib)) == sorted(names | {"ld.so"})
    assert os.readlink(lib / "ld.so") == os.path.basename(libs[0])
    assert os.access(lib / "ld.so", os.X_OK)
    for p in libs:
        f = lib / os.path.basename(p)
        assert not f.is_symlink() and f.read_bytes() == open(p, "rb").read()
    for d in (bundle, lib):
        assert d.stat().st_mode & 0o777 == 0o755


class RootedEnvd(Envd):
    """The bundled envd as pid 1 of its own mount and pid namespaces, chrooted into root."""

    def __init__(self, root, with_usr=False):
        self.port = free_port()
        self.log = open(root.parent / f"envd-{self.port}.log", "w+b")
        mounts = [f"mount --bind /dev/null {root}/dev/null", f"mount -t proc proc {root}/proc"]
        if with_usr:
            mounts += [f"mount --bind /usr {root}/usr", f"mount -o remount,bind,ro {root}/usr"]
        script = " && ".join(mounts) + f' && exec chroot {root} "$@"'
        argv = [*ARGV_PREFIX, "--listen", f"127.0.0.1:{self.port}", "--default-user", "root"]
        # Its own session: a signal to the group reaches envd inside the pid namespace.
        self.proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c",
                                      script, "sh", *argv], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envd exited with {self.proc.returncode}: {self.log_text()}")
            try:
                if self.get("/health")[0] == 204:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"envd did not become healthy: {self.log_text()}")
            time.sleep(0.02)

    def log_text(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def make_root(path, bundle, with_usr=False):
    """A root with the bundle at /opt/hutch and only what envd itself needs around it: a user
    database naming root, /tmp, /dev/null and /proc (the sanitizers read it)."""
    root = path / "root"
    for d in ("opt", "etc", "tmp", "dev", "proc", "root"):
        (root / d).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    shutil.copytree(bundle, root / "opt/hutch", symlinks=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "dev/null").touch()
    if with_usr:
        (root / "usr").mkdir()
        for d in ("bin", "lib", "lib64", "sbin"):
            os.symlink(f"usr/{d}", root / d)
    return root


@pytest.fixture
def empty_root_envd(bundle, tmp_path):
    e = RootedEnvd(make_root(tmp_path, bundle))
    yield e
    assert e.stop() == 0, e.log_text()


def test_bundle_runs_in_an_empty_root(empty_root_envd):
    assert empty_root_envd.get("/health")[0] == 204


def test_filesystem_api_in_an_empty_root(empty_root_envd):
    status, body = empty_root_envd.unary("/filesystem.Filesystem/MakeDir", {"path": "/tmp/made"})
    assert status == 200, body
    status, body = empty_root_envd.unary("/filesystem.Filesystem/ListDir", {"path": "/opt/hutch"})
    assert status == 200, body
    assert {"envd", "lib"} <= {e["name"] for e in body["entries"]} <= {"envd", "lib", "interpd", "python"}
    status, body = empty_root_envd.unary("/filesystem.Filesystem/ListDir", {"path": "/tmp"})
    assert [e["name"] for e in body["entries"]] == ["made"]


def test_processes_inherit_nothing_from_the_bundle(bundle, tmp_path):
    """With a shell from the host's /usr: what envd starts loads the root's own libraries, and
    its environment names no library path."""
    e = RootedEnvd(make_root(tmp_path, bundle, with_usr=True), with_usr=True)
    try:
        cmd = "env; echo ---; grep -c /opt/hutch /proc/self/maps; echo ---; tr '\\0' ' ' </proc/1/cmdline"
        status, _, env = e.stream("/process.Process/Start", envelope(start_request(cmd)))
        assert status == 200
        out = b"".join(base64.b64decode(o["event"]["data"]["stdout"]) for f, o in env
                       if "data" in o.get("event", {}) and "stdout" in o["event"]["data"]).decode()
        environ, maps, cmdline = out.split("---\n")
        assert not [line for line in environ.splitlines() if line.startswith("LD_")], environ
        assert maps.strip() == "0"
        # envd is pid 1 here; the kernel shows the loader's command line (--argv0 changes only
        # the argv[0] that envd's main() gets).
        assert cmdline.split() == [*ARGV_PREFIX, "--listen", f"127.0.0.1:{e.port}", "--default-user", "root"]
    finally:
        assert e.stop() == 0, e.log_text()
