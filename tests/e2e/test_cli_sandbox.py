"""The sandbox commands of the hutch CLI, and the C programs on libhutch, against a real
`hutch serve`: lifecycle with tables and --json, exec, shell on a pseudo-terminal, cp, logs,
errors. Every sandbox made here is killed at the end."""
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time

import pytest

from conftest import ROOT, build_dir
from hutch_server import HutchServer


@pytest.fixture(scope="module")
def server(bindir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = HutchServer(bindir, tmp_path_factory.mktemp("cli") / "state", port).start()
    srv.key = srv.create_key()
    srv.made = []
    yield srv
    for sid in srv.made:
        srv.request("DELETE", f"/sandboxes/{sid}", headers={"X-API-KEY": srv.key})
    status, _, body = srv.request("GET", "/v2/sandboxes", headers={"X-API-KEY": srv.key})
    assert status == 200 and json.loads(body) == [], body
    assert srv.stop() == 0, srv.log()
    sandboxes = os.path.join(srv.state_dir, "sandboxes")
    assert not os.path.isdir(sandboxes) or os.listdir(sandboxes) == []


def env_for(server, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_URL=f"http://127.0.0.1:{server.port}", E2B_API_KEY=server.key)
    env.update(extra)
    return env


def hutch(server, *args, input=None, env=None, timeout=60, text=True):
    return subprocess.run([str(build_dir() / "bin" / "hutch"), *args], capture_output=True, text=text,
                          input=input, env=env or env_for(server), timeout=timeout)


def create(server, *args):
    p = hutch(server, "sandbox", "create", *args)
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    assert re.fullmatch(r"[a-z0-9]+", sid), p.stdout
    server.made.append(sid)
    return sid


@pytest.fixture(scope="module")
def sandbox(server):
    return create(server, "--env", "GREETING=hello world", "--metadata", "suite=cli")


def test_help_lists_the_sandbox_commands(server):
    p = hutch(server, "help")
    for cmd in ("sandbox", "exec", "shell", "cp", "logs", "serve", "key"):
        assert re.search(rf"^  {cmd} ", p.stdout, re.M), cmd
    for cmd in (["sandbox", "--help"], ["exec", "--help"], ["shell", "--help"], ["cp", "--help"],
                ["logs", "--help"]):
        p = hutch(server, *cmd)
        assert p.returncode == 0 and "Usage: hutch" in p.stdout and "--api-url" in p.stdout, cmd


def test_lifecycle_with_tables_and_json(server):
    sid = create(server, "--template", "base", "--timeout", "120", "--metadata", "owner=e2e",
                 "--metadata", "n=1", "--env", "A=1")
    p = hutch(server, "sandbox", "list")
    assert p.returncode == 0, p.stderr
    header, *rows = p.stdout.splitlines()
    assert header.split()[:3] == ["SANDBOX", "ID", "TEMPLATE"]
    row = next(r for r in rows if r.startswith(sid))
    assert "running" in row and "owner=e2e" in row and "base" in row

    p = hutch(server, "sandbox", "list", "--json", "--metadata", "owner=e2e", "--state", "running")
    listed = json.loads(p.stdout)
    assert [s["sandboxID"] for s in listed] == [sid]
    assert listed[0]["metadata"] == {"owner": "e2e", "n": "1"}
    p = hutch(server, "sandbox", "list", "--json", "--metadata", "owner=nobody")
    assert json.loads(p.stdout) == []
    p = hutch(server, "sandbox", "list", "--json", "--state", "paused")
    assert p.returncode == 0 and sid not in p.stdout

    p = hutch(server, "sandbox", "info", sid)
    assert p.returncode == 0, p.stderr
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in p.stdout.splitlines())
    assert fields["Sandbox ID"] == sid and fields["State"] == "running"
    assert fields["CPUs"] == "2" and fields["Memory"] == "512 MiB" and "owner=e2e" in fields["Metadata"]
    info = json.loads(hutch(server, "sandbox", "info", "--json", sid).stdout)
    assert info["sandboxID"] == sid and info["state"] == "running" and "envdAccessToken" in info

    p = hutch(server, "sandbox", "timeout", sid, "600")
    assert p.returncode == 0 and p.stdout == f"timeout set {sid}\n", p.stderr

    created = json.loads(hutch(server, "sandbox", "create", "--json").stdout)
    server.made.append(created["sandboxID"])
    assert created["envdVersion"] and created["templateID"]

    p = hutch(server, "sandbox", "kill", sid)
    assert p.returncode == 0 and p.stdout == f"killed {sid}\n"
    p = hutch(server, "sandbox", "kill", "--json", created["sandboxID"])
    assert json.loads(p.stdout) == {"sandboxID": created["sandboxID"], "result": "killed"}
    p = hutch(server, "sandbox", "info", sid)
    assert p.returncode == 1 and "not found" in p.stderr and p.stdout == ""
    assert sid not in hutch(server, "sandbox", "list").stdout


def test_list_follows_pagination(server):
    # the server pages by 100; the CLI must follow X-Next-Token to the end
    made = []
    try:
        for _ in range(103):
            status, _, body = server.request("POST", "/v2/sandboxes",
                                             body={"templateID": "base", "timeout": 120,
                                                   "metadata": {"page": "test"}},
                                             headers={"X-API-KEY": server.key})
            assert status == 201, body
            made.append(json.loads(body)["sandboxID"])
            server.made.append(made[-1])
        p = hutch(server, "sandbox", "list", "--json", "--metadata", "page=test")
        assert p.returncode == 0, p.stderr
        assert sorted(s["sandboxID"] for s in json.loads(p.stdout)) == sorted(made)
        p = hutch(server, "sandbox", "list", "--metadata", "page=test")
        assert len(p.stdout.splitlines()) == 1 + len(made)
    finally:
        p = hutch(server, "sandbox", "kill", *made)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == len(made)


def test_exec_separates_streams_and_returns_exit_codes(server, sandbox):
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "echo out; echo err >&2; echo $GREETING; exit 3")
    assert p.returncode == 3
    assert p.stdout == "out\nhello world\n" and p.stderr == "err\n"
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "kill -TERM $$")
    assert p.returncode == 128 + signal.SIGTERM
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "kill -KILL $$")
    assert p.returncode == 128 + signal.SIGKILL
    p = hutch(server, "exec", sandbox, "true")
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""


def test_exec_env_cwd_user(server, sandbox):
    p = hutch(server, "exec", sandbox, "--env", "X=1", "--env", "Y=a b", "--cwd", "/tmp", "--user", "root",
              "--", "sh", "-c", 'echo "$X|$Y|$(pwd)|$(id -un)"')
    assert p.returncode == 0, p.stderr
    assert p.stdout == "1|a b|/tmp|root\n"
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "echo $(id -un) $HOME")
    assert p.stdout == "user /home/user\n"


def test_exec_streams_output_as_it_comes(server, sandbox):
    proc = subprocess.Popen([str(build_dir() / "bin" / "hutch"), "exec", sandbox, "--", "sh", "-c",
                             "echo first; sleep 3; echo second"], stdout=subprocess.PIPE,
                            env=env_for(server))
    start = time.monotonic()
    assert proc.stdout.readline() == b"first\n"
    assert time.monotonic() - start < 2.5, "the first line waited for the command to end"
    assert proc.stdout.read() == b"second\n"
    assert proc.wait(timeout=10) == 0


def test_exec_stops_when_its_reader_goes(server, sandbox):
    p = subprocess.run(f'"{build_dir() / "bin" / "hutch"}" exec {sandbox} -- yes | head -n 2', shell=True,
                       capture_output=True, text=True, env=env_for(server), timeout=30)
    assert p.stdout == "y\ny\n"
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "pgrep -x yes || echo none")
    assert p.stdout == "none\n"


def test_exec_forwards_stdin_and_timeout(server, sandbox):
    data = "".join(f"line {i}\n" for i in range(2000))
    p = hutch(server, "exec", "-i", sandbox, "--", "sh", "-c", "cat | wc -l", input=data)
    assert p.returncode == 0 and p.stdout.strip() == "2000", p.stderr
    p = hutch(server, "exec", sandbox, "--timeout", "1", "--", "sleep", "30", timeout=20)
    assert p.returncode == 124 and "hutch exec: " in p.stderr


def test_exec_failures_are_clear(server, sandbox):
    p = hutch(server, "exec", sandbox, "--", "no-such-program")
    assert p.returncode == 1 and "no-such-program" in p.stderr
    p = hutch(server, "exec", sandbox, "--cwd", "/nonexistent", "--", "true")
    assert p.returncode == 1 and "/nonexistent" in p.stderr
    p = hutch(server, "exec", "nosuchsandbox", "--", "true")
    assert p.returncode == 1 and "not found" in p.stderr
    p = hutch(server, "exec", sandbox)
    assert p.returncode == 2 and "which command" in p.stderr


def test_cp_both_ways_with_a_binary_file(server, sandbox, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(5 << 20) + bytes(range(256)))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    p = hutch(server, "cp", str(src), f"{sandbox}:/tmp/in/blob.bin")
    assert p.returncode == 0, p.stderr
    p = hutch(server, "exec", sandbox, "--", "sha256sum", "/tmp/in/blob.bin")
    assert p.stdout.split()[0] == digest
    back = tmp_path / "back.bin"
    p = hutch(server, "cp", f"{sandbox}:/tmp/in/blob.bin", str(back))
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest

    # a remote directory (trailing /) and a local directory keep the name
    p = hutch(server, "cp", str(src), f"{sandbox}:/tmp/")
    assert p.returncode == 0, p.stderr
    (tmp_path / "d").mkdir()
    p = hutch(server, "cp", f"{sandbox}:/tmp/blob.bin", str(tmp_path / "d"))
    assert p.returncode == 0 and (tmp_path / "d" / "blob.bin").stat().st_size == src.stat().st_size

    # stdin and stdout, a relative path in the user's home
    p = hutch(server, "cp", "-", f"{sandbox}:notes.txt", input=b"from stdin\n", text=False)
    assert p.returncode == 0, p.stderr
    p = hutch(server, "cp", f"{sandbox}:/home/user/notes.txt", "-", text=False)
    assert p.returncode == 0 and p.stdout == b"from stdin\n"

    p = hutch(server, "cp", f"{sandbox}:/nonexistent", str(tmp_path / "missing"))
    assert p.returncode == 1 and "does not exist" in p.stderr
    assert not (tmp_path / "missing").exists()
    assert not [f for f in os.listdir(tmp_path) if ".hutch-" in f]
    p = hutch(server, "cp", str(tmp_path / "nope"), f"{sandbox}:/tmp/x")
    assert p.returncode == 1 and "nope" in p.stderr
    for bad in ([str(src), str(back)], [f"{sandbox}:/a", f"{sandbox}:/b"], [str(src)], [str(src), f"{sandbox}:"]):
        assert hutch(server, "cp", *bad).returncode == 2, bad


def test_logs(server, sandbox):
    p = hutch(server, "logs", sandbox)
    assert p.returncode == 0, p.stderr
    assert "listening on 127.0.0.1:49983" in p.stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT\S+  (debug|info |warn |error)  ", p.stdout)
    entries = json.loads(hutch(server, "logs", "--json", sandbox).stdout)
    assert entries and all(set(e) == {"timestamp", "level", "message", "fields"} for e in entries)
    assert entries[0]["fields"].get("program") == "envd"
    assert len(json.loads(hutch(server, "logs", "--json", "--limit", "1", sandbox).stdout)) == 1
    assert json.loads(hutch(server, "logs", "--json", "--start", "99999999999999", sandbox).stdout) == []
    p = hutch(server, "logs", "nosuchsandbox")
    assert p.returncode == 1 and "not found" in p.stderr
    assert hutch(server, "logs", sandbox, "--limit", "0").returncode == 2


def test_logs_follow_until_the_sandbox_ends(server, tmp_path):
    sid = create(server)
    proc = subprocess.Popen([str(build_dir() / "bin" / "hutch"), "logs", "--follow", sid],
                            stdout=subprocess.PIPE, text=True, env=env_for(server))
    try:
        assert "listening on 127.0.0.1:49983" in proc.stdout.readline()
        # a refused upload is one new line in envd's log
        (tmp_path / "f").write_text("x")
        assert hutch(server, "cp", str(tmp_path / "f"), f"{sid}:/tmp").returncode == 1
        deadline = time.monotonic() + 15
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "POST /files" in line:
                break
        assert "POST /files" in lines[-1], lines
        assert hutch(server, "sandbox", "kill", sid).returncode == 0
        assert proc.wait(timeout=15) == 0
        rest = proc.stdout.read()
        everything = "".join(lines) + rest
        assert everything.count("POST /files") == 1, everything
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def read_until(fd, needle, timeout=15):
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if not r:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        buf += data
        if needle in buf:
            return buf
    raise AssertionError(f"{needle!r} never came; got {buf!r}")


def test_shell_on_a_pseudo_terminal(server, sandbox):
    hutch_bin = str(build_dir() / "bin" / "hutch")
    env = env_for(server, TERM="xterm-256color")
    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            # hutch must give the terminal back as it found it: stty shows it after exit
            os.execve("/bin/sh", ["sh", "-c", f'"{hutch_bin}" shell {sandbox}; rc=$?; stty -a; exit $rc'], env)
        finally:
            os._exit(127)
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"echo $TERM; stty size; echo he''llo\r")
        out = read_until(fd, b"hello\r\n")
        assert b"xterm-256color\r\n" in out and b"30 100\r\n" in out
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 123, 0, 0))
        time.sleep(0.5)
        os.write(fd, b"stty size\r")
        read_until(fd, b"40 123\r\n")
        # Ctrl-C reaches the remote shell (raw mode), it does not stop hutch
        os.write(fd, b"sleep 30\r")
        time.sleep(0.5)
        os.write(fd, b"\x03")
        os.write(fd, b"echo after-interrupt\r")
        read_until(fd, b"after-interrupt\r\n", timeout=10)
        os.write(fd, b"exit 7\r")
        tail = read_until(fd, b"speed", timeout=15)
        while True:  # the rest of stty -a, until the terminal closes
            r, _, _ = select.select([fd], [], [], 5)
            try:
                data = os.read(fd, 65536) if r else b""
            except OSError:
                data = b""
            if not data:
                break
            tail += data
        assert re.search(rb"(^|\s)icanon", tail) and re.search(rb"(^|\s)echo", tail), tail
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 7


def test_shell_with_piped_stdin(server, sandbox):
    p = hutch(server, "shell", sandbox, input="echo piped-$((6*7))\nexit 4\n")
    assert p.returncode == 4
    assert "piped-42" in p.stdout


def test_shell_ends_on_sigterm_and_sighup(server, sandbox):
    # an interactive bash ignores SIGTERM: hutch must still end it, and itself
    for sig in (signal.SIGTERM, signal.SIGHUP):
        proc = subprocess.Popen([str(build_dir() / "bin" / "hutch"), "shell", sandbox],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_for(server))
        proc.stdin.write(b"echo ready\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        seen = b""
        while b"ready\r\n" not in seen and time.monotonic() < deadline:
            seen += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 128 + sig
        proc.stdin.close()
        proc.stdout.close()
    p = hutch(server, "exec", sandbox, "--", "sh", "-c", "pgrep -x bash || echo none")
    assert p.stdout == "none\n"


def test_pause_and_resume_are_clear(server, sandbox):
    p = hutch(server, "sandbox", "pause", sandbox)
    assert p.returncode == 0, p.stderr
    assert json.loads(hutch(server, "sandbox", "info", "--json", sandbox).stdout)["state"] == "paused"
    p = hutch(server, "sandbox", "pause", sandbox)
    assert p.returncode == 1 and "already paused" in p.stderr
    p = hutch(server, "sandbox", "resume", sandbox)
    assert p.returncode == 0, p.stderr
    assert json.loads(hutch(server, "sandbox", "info", "--json", sandbox).stdout)["state"] == "running"
    assert hutch(server, "exec", sandbox, "--", "true").returncode == 0
    p = hutch(server, "sandbox", "pause", "nosuchsandbox")
    assert p.returncode == 1 and "not found" in p.stderr


def test_bad_input(server):
    p = hutch(server, "sandbox", "info", "nosuchsandbox")
    assert p.returncode == 1 and p.stderr == "hutch sandbox info: sandbox nosuchsandbox not found\n"
    p = hutch(server, "sandbox", "kill", "nosuchsandbox")
    assert p.returncode == 1 and "not found" in p.stderr
    for args in (["sandbox"], ["sandbox", "frob"], ["sandbox", "list", "--bogus"], ["sandbox", "info"],
                 ["sandbox", "create", "--timeout", "soon"], ["sandbox", "create", "--env", "NOEQUALS"],
                 ["sandbox", "list", "--state", "dead"], ["sandbox", "kill", "--env", "A=1", "x"],
                 ["exec"], ["exec", "--frob", "x", "--", "true"], ["shell"], ["cp"], ["logs"]):
        p = hutch(server, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr, args
    p = hutch(server, "sandbox", "create", "--template", "nosuchtemplate")
    assert p.returncode == 1 and "nosuchtemplate" in p.stderr


def test_missing_or_wrong_key_and_no_server(server):
    env = env_for(server)
    del env["E2B_API_KEY"]
    p = hutch(server, "sandbox", "list", env=env)
    assert p.returncode == 1 and "no API key" in p.stderr and "E2B_API_KEY" in p.stderr
    p = hutch(server, "sandbox", "list", "--api-key", "e2b_" + "0" * 40)
    assert p.returncode == 1 and "invalid API key" in p.stderr
    p = hutch(server, "sandbox", "list", "--api-key", server.key, env=env)
    assert p.returncode == 0, p.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    p = hutch(server, "sandbox", "list", "--api-url", f"http://127.0.0.1:{dead}")
    assert p.returncode == 1 and f"127.0.0.1:{dead}" in p.stderr
    env = env_for(server, E2B_API_URL=f"http://127.0.0.1:{dead}")
    p = hutch(server, "sandbox", "list", "--api-url", f"http://127.0.0.1:{server.port}", env=env)
    assert p.returncode == 0, p.stderr


def test_sandbox_traffic_follows_e2b_sandbox_url(server, sandbox):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = env_for(server, E2B_SANDBOX_URL=f"http://127.0.0.1:{dead}")
    assert hutch(server, "sandbox", "info", sandbox, env=env).returncode == 0
    p = hutch(server, "exec", sandbox, "--", "true", env=env)
    assert p.returncode == 1 and f"127.0.0.1:{dead}" in p.stderr
    env = env_for(server, E2B_SANDBOX_URL=f"http://127.0.0.1:{server.port}/")
    assert hutch(server, "exec", sandbox, "--", "true", env=env).returncode == 0


def test_libhutch_program(server, tmp_path):
    exe = build_dir() / "tests" / "client" / "libhutch-e2e"
    p = subprocess.run([str(exe), str(tmp_path)], capture_output=True, text=True, env=env_for(server),
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not ok" not in p.stdout and re.search(r"^1\.\.\d+$", p.stdout, re.M), p.stdout
    # it kills its own sandbox; none of its sandboxes is left
    listed = json.loads(hutch(server, "sandbox", "list", "--json", "--metadata", "suite=libhutch-e2e").stdout)
    assert listed == []


def test_libhutch_exports_only_hutch_symbols():
    lib = build_dir() / "src" / "client" / "libhutch.so"
    p = subprocess.run([str(ROOT / "tests" / "client" / "check-exports.py"), str(lib)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_libhutch_unit_tests():
    # tests/run's unit suite reads BUILD/tests/unit only; libhutch's units live beside its e2e program
    exe = build_dir() / "tests" / "client" / "test-client-units"
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "not ok" not in p.stdout, p.stdout + p.stderr
