"""`hutch template build|list|delete` against a real `hutch serve`: a Hutchfile with COPY, RUN,
ENV, WORKDIR, USER and START/READY becomes a template whose sandboxes hold its files, env,
directory, user and running start command; a root filesystem tarball as the base; a failing RUN
exits 1 naming the step; Hutchfile errors name their line; COPY never reads outside the
context; the COPY cache; list and delete.
Every sandbox and template made here is removed at the end."""
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile

import pytest

from conftest import build_dir
from hutch_server import HutchServer


@pytest.fixture(scope="module")
def server(bindir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = HutchServer(bindir, tmp_path_factory.mktemp("tpl") / "state", port).start()
    srv.key = srv.create_key()
    srv.sandboxes = []
    srv.templates = []
    yield srv
    for sid in srv.sandboxes:
        srv.request("DELETE", f"/sandboxes/{sid}", headers={"X-API-KEY": srv.key})
    for name in srv.templates:
        srv.request("DELETE", f"/templates/{name}", headers={"X-API-KEY": srv.key})
    assert srv.stop() == 0, srv.log()


def env_for(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_URL=f"http://127.0.0.1:{server.port}", E2B_API_KEY=server.key)
    return env


def hutch(server, *args, cwd=None, timeout=300):
    return subprocess.run([str(build_dir() / "bin" / "hutch"), *args], capture_output=True, text=True,
                          env=env_for(server), cwd=cwd, timeout=timeout)


def build(server, ctx, name, *args):
    server.templates.append(name)
    return hutch(server, "template", "build", "--context", str(ctx), "--name", name, *args)


def sandbox(server, template):
    p = hutch(server, "sandbox", "create", "--template", template, "--timeout", "120")
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    server.sandboxes.append(sid)
    return sid


def sh(server, sid, script, *args):
    return hutch(server, "exec", sid, *args, "--", "sh", "-c", script, timeout=60)


def make_context(tmp_path, hutchfile):
    ctx = tmp_path / "ctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "app" / "hello.txt").write_text("hello from the context\n")
    (ctx / "app" / "sub" / "deep.txt").write_text("deep\n")
    tool = ctx / "app" / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    os.symlink("/etc/hostname", ctx / "app" / "outside-link")
    (ctx / "Hutchfile").write_text(hutchfile)
    return ctx


FULL = """\
# a template for the e2e tests
FROM base
ARG GREETING_WORD=hello
COPY app /opt/app
RUN echo "$GREETING_WORD from the build" > /opt/app/built.txt && \\
    chown -R user /opt/app
ENV GREETING="$GREETING_WORD world" \\
    MODE=test
WORKDIR /opt/app
USER user
START ["sh", "-c", "echo started > /tmp/started; exec sleep 1000"]
READY test -f /tmp/started
EXPOSE 8080
"""


def test_build_then_sandboxes_have_its_files_env_workdir_user_and_start_command(server, tmp_path):
    ctx = make_context(tmp_path, FULL)
    p = build(server, ctx, "e2e-full", "--build-arg", "GREETING_WORD=bonjour", "--cpu", "1", "--memory-mb", "256")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Hutchfile:13: warning: EXPOSE is ignored" in p.stderr
    m = re.search(r"^template (\S+) ready: (.*)$", p.stdout, re.M)
    assert m, p.stdout
    template_id, names = m.group(1), m.group(2)
    assert "e2e-full" in names
    # the server's log, step by step, as it came
    assert re.search(r"^\[3\] COPY app: uploading 6 files", p.stdout, re.M), p.stdout
    assert re.search(r"^\[4\] Step 4/\d+: RUN", p.stdout, re.M), p.stdout
    assert "[finalize]" in p.stdout

    sid = sandbox(server, "e2e-full")
    r = sh(server, sid, 'id -un; pwd; echo "$GREETING"; echo "$MODE"; cat hello.txt sub/deep.txt built.txt; '
                        './tool.sh; readlink outside-link; cat /tmp/started')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["user", "/opt/app", "bonjour world", "test", "hello from the context",
                                     "deep", "bonjour from the build", "tool ran", "/etc/hostname", "started"]
    # the start command is running in every sandbox of the template
    r = sh(server, sid, "pgrep -x sleep >/dev/null && echo running")
    assert r.stdout == "running\n", r.stderr

    info = json.loads(hutch(server, "sandbox", "info", "--json", sid).stdout)
    assert info["templateID"] == template_id

    # the same context again: the COPY files are already on the server
    p = build(server, ctx, "e2e-full", "--build-arg", "GREETING_WORD=bonjour", "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"template {template_id} ready"), p.stdout
    p = build(server, ctx, "e2e-full", "--build-arg", "GREETING_WORD=bonjour")
    assert "cached by the server" in p.stdout, p.stdout


def test_a_failing_run_exits_1_naming_the_step(server, tmp_path):
    (tmp_path / "Hutchfile").write_text("FROM base\nRUN echo before\nRUN echo about to fail; exit 3\nRUN echo never\n")
    p = build(server, tmp_path, "e2e-fails")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "about to fail" in p.stdout
    assert "Step 5/" not in p.stdout
    # steps 1 and 2 are the USER root and WORKDIR / that E2B's fromDockerfile adds
    assert re.search(r"Hutchfile:3: step 4/\d+ \(RUN echo about to fail; exit 3\) failed: .*3", p.stderr), p.stderr
    p = hutch(server, "template", "build", "--context", str(tmp_path), "--name", "e2e-fails", "--json")
    assert p.returncode == 1
    result = json.loads(p.stdout)
    assert result["status"] == "error" and result["step"] == "4" and result["reason"]


def test_hutchfile_errors_name_their_line_and_reach_no_server(server, tmp_path):
    (tmp_path / "Hutchfile").write_text("FROM base\nRUN true\nFROBNICATE now\n")
    p = build(server, tmp_path, "e2e-syntax")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == f"hutch template build: {tmp_path}/Hutchfile:3: unknown instruction FROBNICATE\n"
    (tmp_path / "Other").write_text("FROM base\nCOPY ../secret /x\n")
    p = hutch(server, "template", "build", "-f", "Other", "--name", "e2e-syntax", cwd=tmp_path)
    assert p.returncode == 1 and "Other:2: COPY ../secret: the path leaves the context directory" in p.stderr
    p = hutch(server, "template", "list", "--json")
    assert not any("e2e-syntax" in t["names"] for t in json.loads(p.stdout))


def test_copy_never_reads_outside_the_context(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink(outside, ctx / "dirlink")
    (ctx / "Hutchfile").write_text("FROM base\nCOPY dirlink/secret /tmp/\n")
    p = build(server, ctx, "e2e-escape")
    assert p.returncode == 1
    assert "dirlink is a symbolic link; a source may not go through one" in p.stderr, p.stderr
    (ctx / "Hutchfile").write_text("FROM base\nCOPY missing /tmp/\n")
    p = build(server, ctx, "e2e-escape")
    assert p.returncode == 1 and "COPY missing: no such file in the context directory" in p.stderr


def test_dry_run_prints_the_build_spec(server, tmp_path):
    (tmp_path / "Hutchfile").write_text('FROM debian:bookworm\nARG V=1\nRUN ["echo", "$V", "a b"]\nCMD serve $V\n')
    p = hutch(server, "template", "build", "--dry-run", "--build-arg", "V=2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    spec = json.loads(p.stdout)
    assert spec["fromImage"] == "debian:bookworm"
    assert [s["type"] for s in spec["steps"]] == ["USER", "WORKDIR", "RUN", "USER", "WORKDIR"]
    assert spec["steps"][2]["args"] == ["echo '$V' 'a b'"]
    assert spec["startCmd"] == "serve 2" and spec["readyCmd"] == "sleep 20"


def test_list_and_delete(server, tmp_path):
    (tmp_path / "Hutchfile").write_text("FROM base\nENV LISTED=yes\n")
    p = build(server, tmp_path, "e2e-listed", "--cpu", "1", "--memory-mb", "256", "--quiet")
    assert p.returncode == 0, p.stderr
    template_id = p.stdout.split()[1]
    p = hutch(server, "template", "list")
    assert p.returncode == 0, p.stderr
    header, *rows = p.stdout.splitlines()
    assert header.split() == ["ID", "NAMES", "STATUS", "CPU", "MEMORY", "CREATED"]
    row = next(r for r in rows if r.startswith(template_id))
    assert "e2e-listed" in row and "ready" in row and "256 MiB" in row
    assert any(r.startswith("base ") for r in rows)
    listed = json.loads(hutch(server, "template", "list", "--json").stdout)
    assert any(t["templateID"] == template_id and t["cpuCount"] == 1 for t in listed)

    p = hutch(server, "template", "delete", "e2e-listed")
    assert p.returncode == 0 and p.stdout == "deleted e2e-listed\n", p.stderr
    assert template_id not in hutch(server, "template", "list").stdout
    p = hutch(server, "template", "delete", "e2e-listed")
    assert p.returncode == 1 and "not found" in p.stderr
    p = hutch(server, "template", "delete", "base")
    assert p.returncode == 1


def test_usage_errors(server):
    p = hutch(server, "template")
    assert p.returncode == 2 and "Usage: hutch template" in p.stderr
    p = hutch(server, "template", "frob")
    assert p.returncode == 2
    p = hutch(server, "template", "list", "--name", "x")
    assert p.returncode == 2
    p = hutch(server, "template", "build", "--cpu", "0")
    assert p.returncode == 2
    p = hutch(server, "template", "--help")
    assert p.returncode == 0 and "--build-arg" in p.stdout and "--api-url" in p.stdout


def mini_rootfs(path):
    """A root filesystem tarball (merged /usr, as Debian's) with dash and the few programs a
    build provisions a base with, the libraries they load, two users and a marker file."""
    progs = ["dash", "cat", "mkdir", "chmod", "chown", "id", "grep", "rm", "ls", "cut", "getent"]
    files = {}  # name in the tarball (as the loader looks it up) -> the host's file
    for prog in progs:
        exe = shutil.which(prog)
        files["usr/bin/" + prog] = os.path.realpath(exe)
        out = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
        for lib in re.findall(r"(/\S+) \(0x", out):
            name = lib.lstrip("/")
            files[name if name.startswith("usr/") else "usr/" + name] = os.path.realpath(lib)

    def add(tar, name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, uid=0):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.uid, info.gid = kind, link, mode, uid, uid
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    with tarfile.open(path, "w:gz" if str(path).endswith(".gz") else "w") as tar:
        for d in ("usr", "usr/bin", "usr/lib", "usr/lib64", "etc", "home", "root", "tmp"):
            add(tar, d, tarfile.DIRTYPE, mode=0o755)
        add(tar, "home/user", tarfile.DIRTYPE, mode=0o755, uid=1000)
        for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                             ("usr/bin/sh", "dash")):
            add(tar, name, tarfile.SYMTYPE, link=target, mode=0o777)
        for name, real in sorted(files.items()):
            tar.add(real, arcname=name)
        add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        add(tar, "etc/group", data=b"root:x:0:\nuser:x:1000:\n")
        add(tar, "marker", data=b"from the tarball\n")


def test_tarball_base(server, tmp_path):
    mini_rootfs(tmp_path / "rootfs.tar.gz")
    (tmp_path / "Hutchfile").write_text("FROM ./rootfs.tar.gz\nRUN cat /marker > /copied\n")
    p = build(server, tmp_path, "e2e-tarball")
    # the upload convention of docs/user-guide.md, "Tarball bases"
    assert "[base] FROM rootfs.tar.gz: uploading 1 files" in p.stdout, p.stdout + p.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    sid = sandbox(server, "e2e-tarball")
    r = hutch(server, "exec", sid, "--", "cat", "/copied")
    assert r.stdout == "from the tarball\n", r.stderr


def debian_mirror_reachable():
    try:
        with socket.create_connection(("deb.debian.org", 80), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not shutil.which("debootstrap"), reason="debootstrap is not installed (make deps)")
def test_debian_bookworm_base_with_apt_get_install(server, tmp_path):
    if not debian_mirror_reachable():
        pytest.skip("deb.debian.org cannot be reached from this machine")
    (tmp_path / "Hutchfile").write_text(
        "FROM debian:bookworm\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends jq\n"
        "USER user\n")
    # The first build of the base runs debootstrap (a minute or two); later ones reuse it.
    p = hutch(server, "template", "build", "--context", str(tmp_path), "--name", "e2e-bookworm", timeout=900)
    server.templates.append("e2e-bookworm")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "debootstrap" in p.stdout or "Retrieving" in p.stdout or "cached" in p.stdout, p.stdout[-2000:]
    sid = sandbox(server, "e2e-bookworm")
    r = sh(server, sid, 'echo \'{"a": 41}\' | jq ".a + 1"; cat /etc/debian_version; whoami; pwd')
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "42" and out[1].startswith("12.") and out[2:4] == ["user", "/home/user"], r.stdout
