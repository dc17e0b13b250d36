"""envd over raw HTTP: the Connect protocol's edges and bad input (each gets the contract's
error and envd stays healthy), plain endpoints, and access-token enforcement after /init."""
import base64
import os
import shutil
import signal
import json
import socket
import struct
import threading
import time

import pytest

from envd_util import (Envd, b64, end_error, envelope, parse_envelopes, read_envelope, start_request)

MAX = 4 << 20
UNAUTHORIZED = ("unauthorized access, please provide a valid access token or method signing "
                "if supported")


@pytest.fixture
def envd():
    e = Envd()
    yield e
    log = e.log_text()
    assert e.stop() == 0, log
    assert "runtime error" not in log and "AddressSanitizer" not in log, log


def test_health_envs_metrics(envd):
    status, _, body = envd.get("/health")
    assert (status, body) == (204, b"")
    status, hdrs, body = envd.get("/envs")
    assert status == 200 and json.loads(body) == {}
    status, _, body = envd.get("/metrics")
    m = json.loads(body)
    for k in ("ts", "cpu_count", "cpu_used_pct", "mem_total", "mem_used", "mem_cache", "mem_total_mib",
              "mem_used_mib", "disk_used", "disk_total"):
        assert k in m, k
    assert m["cpu_count"] >= 1 and m["mem_total"] > m["mem_used"] > 0 and m["disk_total"] > 0
    assert abs(m["ts"] - time.time()) < 60


def test_start_streams_start_data_end(envd):
    status, hdrs, env = envd.stream("/process.Process/Start",
                                    envelope(start_request("echo hello; echo err >&2; exit 3")))
    assert status == 200
    assert hdrs["Content-Type"] == "application/connect+json"
    assert env[0][0] == 0 and env[0][1]["event"]["start"]["pid"] > 0
    out = b"".join(base64.b64decode(o["event"]["data"]["stdout"]) for f, o in env
                   if "data" in o.get("event", {}) and "stdout" in o["event"]["data"])
    err = b"".join(base64.b64decode(o["event"]["data"]["stderr"]) for f, o in env
                   if "data" in o.get("event", {}) and "stderr" in o["event"]["data"])
    assert (out, err) == (b"hello\n", b"err\n")
    assert env[-2][1] == {"event": {"end": {"exitCode": 3, "exited": True, "status": "exit status 3",
                                            "error": "exit status 3"}}}
    assert env[-1] == (2, {})


def test_exit_zero_and_signal_end_events(envd):
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("true")))
    assert env[-2][1] == {"event": {"end": {"exited": True, "status": "exit status 0"}}}
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("kill -TERM $$")))
    assert env[-2][1] == {"event": {"end": {"exitCode": -1, "status": "signal: terminated",
                                            "error": "signal: terminated"}}}


def test_oversized_envelope_header(envd):
    body = struct.pack(">BI", 0, MAX + 1) + b"{}"
    status, _, env = envd.stream("/process.Process/Start", body)
    assert status == 200
    assert end_error(env)["code"] == "resource_exhausted"
    assert envd.healthy()


def _status_from_headers(envd, head: bytes) -> int:
    """Sends only a request head and returns the status envd answers with."""
    with socket.create_connection(("127.0.0.1", envd.port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        return int(data.split(b" ", 2)[1])


def test_oversized_body_by_content_length(envd):
    # Only the headers: envd must answer without waiting for (or buffering) 100 MB.
    assert _status_from_headers(envd, b"POST /process.Process/List HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n") == 429
    assert envd.healthy()


def test_oversized_chunked_unary_body(envd):
    c = envd.conn(30)
    try:
        c.putrequest("POST", "/process.Process/List")
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        block = b"[" * 65536
        for _ in range(MAX // len(block) + 2):
            c.send(b"%x\r\n%s\r\n" % (len(block), block))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 429 and body["code"] == "resource_exhausted"
    finally:
        c.close()
    assert envd.healthy()


def test_chunked_request_body_and_keepalive(envd):
    # Two calls on one connection, the first with a chunked body.
    c = envd.conn()
    try:
        c.putrequest("POST", "/process.Process/List")
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        c.send(b"1\r\n{\r\n1\r\n}\r\n0\r\n\r\n")
        r = c.getresponse()
        assert (r.status, json.loads(r.read())) == (200, {"processes": []})
        c.request("POST", "/process.Process/List", body=b"{}", headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"processes": []}
    finally:
        c.close()


def test_truncated_envelope(envd):
    body = struct.pack(">BI", 0, 100) + b'{"process":'
    status, _, env = envd.stream("/process.Process/Start", body)
    assert status == 200 and end_error(env)["code"] == "invalid_argument"
    status, _, env = envd.stream("/process.Process/Start", b"\x00\x00")
    assert status == 200 and end_error(env)["code"] == "invalid_argument"
    assert envd.healthy()


def test_two_envelopes_for_a_server_stream(envd):
    body = envelope(start_request("true")) * 2
    _, _, env = envd.stream("/process.Process/Start", body)
    assert end_error(env)["code"] == "invalid_argument"


def test_compressed_flag(envd):
    status, _, env = envd.stream("/process.Process/Start", envelope(start_request("true"), flags=1))
    assert status == 200 and end_error(env)["code"] == "internal"
    assert envd.healthy()


def test_malformed_json(envd):
    status, body = envd.unary("/process.Process/List", b"{not json")
    assert status == 400 and body["code"] == "invalid_argument"
    status, body = envd.unary("/process.Process/List", b"[]")
    assert status == 400 and body["code"] == "invalid_argument"
    status, body = envd.unary("/process.Process/List", b"")
    assert status == 400 and body["code"] == "invalid_argument"
    _, _, env = envd.stream("/process.Process/Start", envelope(b'{"process": {'))
    assert end_error(env)["code"] == "invalid_argument"
    _, _, env = envd.stream("/process.Process/Start", envelope({"process": {"cmd": 5}}))
    assert end_error(env)["code"] == "invalid_argument"
    assert envd.healthy()


def test_invalid_utf8(envd):
    status, body = envd.unary("/process.Process/List", b'{"x": "\xff\xfe"}')
    assert status == 400 and body["code"] == "invalid_argument"
    _, _, env = envd.stream("/process.Process/Start", envelope(b'{"process": {"cmd": "\xc3\x28"}}'))
    assert end_error(env)["code"] == "invalid_argument"
    assert envd.healthy()


def test_unknown_fields_are_ignored(envd):
    status, body = envd.unary("/process.Process/List", {"someFutureField": [1, 2]})
    assert (status, body) == (200, {"processes": []})


def test_unknown_method_and_path(envd):
    status, body = envd.unary("/process.Process/Nope", {})
    assert status == 404 and body["code"] == "unimplemented"
    status, body = envd.unary("/nope.Service/Method", {})
    assert status == 404 and body["code"] == "unimplemented"
    status, _, _ = envd.get("/no-such-endpoint")
    assert status == 404
    assert envd.healthy()


def test_wrong_content_type(envd):
    status, _, _ = envd.request("POST", "/process.Process/List", b"{}", {"Content-Type": "application/proto"})
    assert status == 415
    status, _, _ = envd.request("POST", "/process.Process/Start", envelope(start_request("true")),
                                {"Content-Type": "application/json"})
    assert status == 415
    status, _, _ = envd.request("POST", "/process.Process/List", b"{}", {})
    assert status == 415
    status, _, _ = envd.request("GET", "/process.Process/List")
    assert status == 405
    assert envd.healthy()


def test_unknown_user(envd):
    auth = "Basic " + base64.b64encode(b"no-such-user-hutch:").decode()
    status, _, env = envd.stream("/process.Process/Start", envelope(start_request("true")),
                                 {"Authorization": auth})
    assert status == 200 and end_error(env)["code"] == "unauthenticated"
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("true")),
                            {"Authorization": "Basic !!!"})
    assert end_error(env)["code"] == "unauthenticated"
    assert envd.healthy()


def test_bad_cwd(envd):
    req = start_request("true")
    req["process"]["cwd"] = "/no/such/dir"
    _, _, env = envd.stream("/process.Process/Start", envelope(req))
    assert end_error(env) == {"code": "invalid_argument", "message": "cwd '/no/such/dir' does not exist"}


def test_bad_base64_in_send_input(envd):
    status, body = envd.unary("/process.Process/SendInput",
                              {"process": {"pid": 1}, "input": {"stdin": "not base64!"}})
    assert status == 400 and body["code"] == "invalid_argument"
    assert envd.healthy()


def test_unknown_pid_and_signal(envd):
    status, body = envd.unary("/process.Process/SendSignal", {"process": {"pid": 99}, "signal": "SIGNAL_SIGKILL"})
    assert (status, body) == (404, {"code": "not_found", "message": "process with pid 99 not found"})
    status, body = envd.unary("/process.Process/CloseStdin", {"process": {"tag": "nope"}})
    assert status == 404 and body["code"] == "not_found"
    _, _, env = envd.stream("/process.Process/Connect", envelope({"process": {"pid": 99}}))
    assert end_error(env)["code"] == "not_found"


class StartStream:
    """A Start call whose response is read envelope by envelope."""

    def __init__(self, envd, req, headers=None):
        self.c = envd.conn(30)
        h = {"Content-Type": "application/connect+json", **(headers or {})}
        self.c.request("POST", "/process.Process/Start", body=envelope(req), headers=h)
        self.r = self.c.getresponse()
        assert self.r.status == 200
        flags, msg = read_envelope(self.r)
        assert flags == 0
        self.pid = msg["event"]["start"]["pid"]

    def next(self):
        return read_envelope(self.r)

    def rest(self):
        out = []
        while True:
            e = self.next()
            out.append(e)
            if e[0] == 2:
                return out

    def close(self):
        self.c.close()


def test_deadline_from_connect_timeout_kills_the_process(envd):
    t0 = time.monotonic()
    s = StartStream(envd, start_request("sleep 10"), {"Connect-Timeout-Ms": "500"})
    rest = s.rest()
    s.close()
    assert time.monotonic() - t0 < 5
    assert end_error(rest)["code"] == "deadline_exceeded"
    # The process was killed: SIGKILL to its group shows up as its end for a late Connect.
    _, _, env = envd.stream("/process.Process/Connect", envelope({"process": {"pid": s.pid}}))
    assert env[1][1]["event"]["end"]["status"] == "signal: killed"


def test_keepalive_when_idle(envd):
    s = StartStream(envd, start_request("sleep 2.5"), {"Keepalive-Ping-Interval": "1"})
    rest = s.rest()
    s.close()
    assert (0, {"event": {"keepalive": {}}}) in rest
    assert rest[-1] == (2, {})


def test_stdin_open_when_absent_and_stream_input(envd):
    req = start_request("head -c 6; echo; echo done")
    del req["stdin"]
    s = StartStream(envd, req)
    # StreamInput: a client stream of envelopes in one chunked request body, read as they come.
    c = envd.conn()
    try:
        c.putrequest("POST", "/process.Process/StreamInput")
        c.putheader("Content-Type", "application/connect+json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for m in ({"start": {"process": {"pid": s.pid}}}, {"keepalive": {}},
                  {"data": {"input": {"stdin": b64(b"abc")}}}, {"data": {"input": {"stdin": b64(b"def")}}}):
            e = envelope(m)
            c.send(b"%x\r\n%s\r\n" % (len(e), e))
        # The input arrives before the body ends: the process finishes while the call is open.
        out = b""
        while b"done" not in out:
            flags, msg = s.next()
            assert flags == 0, msg
            out += base64.b64decode(msg["event"].get("data", {}).get("stdout", ""))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 200
        assert parse_envelopes(r.read()) == [(0, {}), (2, {})]
    finally:
        c.close()
    assert out == b"abcdef\ndone\n"
    assert s.rest()[-1] == (2, {})
    s.close()


def test_send_signal_unimplemented_for_other_signals(envd):
    s = StartStream(envd, start_request("sleep 10"))
    status, body = envd.unary("/process.Process/SendSignal", {"process": {"pid": s.pid}, "signal": 1})
    assert status == 501 and body["code"] == "unimplemented"
    status, body = envd.unary("/process.Process/SendSignal", {"process": {"pid": s.pid}, "signal": "SIGNAL_SIGTERM"})
    assert status == 200
    rest = s.rest()
    s.close()
    assert rest[-2][1]["event"]["end"]["status"] == "signal: terminated"


def test_client_disconnect_keeps_process_and_frees_stream(envd):
    s = StartStream(envd, start_request("sleep 30"), {"Connect-Timeout-Ms": "60000"})
    s.close()
    status, body = envd.unary("/process.Process/List", {})
    assert [p["pid"] for p in body["processes"]] == [s.pid]
    status, _ = envd.unary("/process.Process/SendSignal", {"process": {"pid": s.pid}, "signal": "SIGNAL_SIGKILL"})
    assert status == 200
    deadline = time.monotonic() + 5
    while envd.unary("/process.Process/List", {})[1]["processes"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_many_concurrent_streams(envd):
    results = []

    def run(i):
        _, _, env = envd.stream("/process.Process/Start", envelope(start_request(f"echo {i}")), timeout=60)
        results.append((i, env))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 32
    for i, env in results:
        assert env[1][1] == {"event": {"data": {"stdout": b64(f"{i}\n".encode())}}}, env
        assert env[-1] == (2, {})


def test_access_token_after_init(envd):
    status, _, _ = envd.request("POST", "/init", json.dumps(
        {"accessToken": "s3cret", "envVars": {"SANDBOX_VAR": "v1"}, "defaultWorkdir": "/tmp"}),
        {"Content-Type": "application/json"})
    assert status == 204
    # Without the token: 401 with envd's exact body.
    status, body = envd.unary("/process.Process/List", {})
    assert status == 401
    assert body == {"code": 401, "message": UNAUTHORIZED}
    status, _, body = envd.get("/envs")
    assert status == 401
    status, _, body = envd.get("/metrics", {"X-Access-Token": "wrong"})
    assert status == 401
    # /health stays open.
    assert envd.get("/health")[0] == 204
    # With it, everything works, and /init's env vars and workdir apply.
    tok = {"X-Access-Token": "s3cret"}
    status, _, body = envd.get("/envs", tok)
    assert status == 200 and json.loads(body) == {"SANDBOX_VAR": "v1"}
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("echo $SANDBOX_VAR; pwd")), tok)
    out = b"".join(base64.b64decode(o["event"]["data"]["stdout"]) for f, o in env
                   if "data" in o.get("event", {}))
    assert out == b"v1\n/tmp\n"
    # Request envs win over sandbox-wide ones.
    req = start_request("echo $SANDBOX_VAR")
    req["process"]["envs"] = {"SANDBOX_VAR": "mine"}
    _, _, env = envd.stream("/process.Process/Start", envelope(req), tok)
    assert base64.b64decode(env[1][1]["event"]["data"]["stdout"]) == b"mine\n"
    # Once a token is set, /init needs it too: nobody else can replace it.
    status, _, _ = envd.request("POST", "/init", json.dumps({"accessToken": "evil"}))
    assert status == 401
    status, _, _ = envd.request("POST", "/init", json.dumps({"accessToken": "new"}), tok)
    assert status == 204
    assert envd.unary("/process.Process/List", {}, {"X-Access-Token": "new"})[0] == 200
    assert envd.unary("/process.Process/List", {}, tok)[0] == 401


def test_init_rejects_bad_bodies(envd):
    status, _, body = envd.request("POST", "/init", b"{bad")
    assert status == 400 and json.loads(body)["code"] == 400
    status, _, body = envd.request("POST", "/init", json.dumps({"envVars": {"A": 1}}))
    assert status == 400
    # Too big by Content-Length: answered from the headers alone.
    assert _status_from_headers(envd, b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n") == 413
    # Too big while streaming (chunked): read and dropped, then answered.
    c = envd.conn(30)
    try:
        c.putrequest("POST", "/init")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        block = b"x" * 65536
        for _ in range(20):
            c.send(b"%x\r\n%s\r\n" % (len(block), block))
        c.send(b"0\r\n\r\n")
        assert c.getresponse().status == 413
    finally:
        c.close()
    assert envd.healthy()


def test_access_token_option():
    e = Envd("--access-token", "opt")
    try:
        assert e.unary("/process.Process/List", {})[0] == 401
        assert e.unary("/process.Process/List", {}, {"X-Access-Token": "opt"})[0] == 200
    finally:
        assert e.stop() == 0


def test_connect_timeout_zero_means_no_limit(envd):
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("sleep 0.3; echo ok")),
                            {"Connect-Timeout-Ms": "0"})
    assert env[-1] == (2, {})
    assert env[-2][1]["event"]["end"]["status"] == "exit status 0"
    _, _, env = envd.stream("/process.Process/Start", envelope(start_request("true")),
                            {"Connect-Timeout-Ms": "soon"})
    assert end_error(env)["code"] == "invalid_argument"


def test_kill_takes_the_process_group(envd):
    # The background sleep holds stdout; the stream can end only when it dies too.
    s = StartStream(envd, start_request("sleep 100 & sleep 100"))
    status, _ = envd.unary("/process.Process/SendSignal", {"process": {"pid": s.pid}, "signal": "SIGNAL_SIGKILL"})
    assert status == 200
    rest = s.rest()
    s.close()
    assert rest[-2][1]["event"]["end"]["status"] == "signal: killed"


def test_tag_selects_for_connect_and_list(envd):
    req = start_request("read x; echo tagged-$x")
    req["tag"] = "my-tag"
    req["stdin"] = True
    s = StartStream(envd, req)
    _, body = envd.unary("/process.Process/List", {})
    assert body["processes"][0]["tag"] == "my-tag"
    assert body["processes"][0]["config"]["args"] == ["-c", "read x; echo tagged-$x"]
    status, _ = envd.unary("/process.Process/SendInput", {"process": {"tag": "my-tag"}, "input": {"stdin": b64(b"y\n")}})
    assert status == 200
    rest = s.rest()
    s.close()
    out = b"".join(base64.b64decode(o["event"]["data"]["stdout"]) for f, o in rest if "data" in o.get("event", {}))
    assert out == b"tagged-y\n"
    _, _, env = envd.stream("/process.Process/Connect", envelope({"process": {"tag": "my-tag"}}))
    assert env[0][1] == {"event": {"start": {"pid": s.pid}}}
    assert env[1][1]["event"]["end"]["exited"] is True
    assert env[-1] == (2, {})


def _children(pid: int):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass  # a thread that just ended
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_pid1_reaps_orphans_and_shuts_down_on_sigterm():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a pid namespace")
    # --kill-child: if the test stops unshare, envd (pid 1 inside) gets SIGTERM too.
    e = Envd(prefix=["unshare", "--fork", "--pid", "--mount-proc", "--kill-child=SIGTERM"])
    try:
        (host_envd,) = _children(e.proc.pid)
        # Each subshell exits at once, leaving its sleep to be reparented to envd (pid 1).
        _, _, env = e.stream("/process.Process/Start",
                             envelope(start_request("for i in $(seq 20); do (sleep 0.2 >/dev/null &); done")))
        assert env[-1] == (2, {})
        deadline = time.monotonic() + 10
        while _children(host_envd):
            assert time.monotonic() < deadline, [(c, _state(c)) for c in _children(host_envd)]
            time.sleep(0.05)
        os.kill(host_envd, signal.SIGTERM)
        assert e.proc.wait(timeout=10) == 0
        assert "shutting down" in e.log_text()
    finally:
        e.stop()


def test_sigterm_kills_and_reaps_running_processes():
    e = Envd()
    try:
        s = StartStream(e, start_request("sleep 100 & sleep 100"))
        pid = s.pid
        s.close()
        e.proc.terminate()
        assert e.proc.wait(timeout=10) == 0
        assert _state(pid) == "gone"
    finally:
        e.stop()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_does_not_grow_memory(envd):
    # 200 MiB of output (267 MiB as base64 JSON) to a client that reads nothing: envd's queue
    # for it is bounded, so the process is held back by its pipe instead.
    body = envelope(start_request("head -c 200M /dev/zero"))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", envd.port))
        s.sendall(b"POST /process.Process/Start HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        peak = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            peak = max(peak, _rss_kib(envd.proc.pid))
            time.sleep(0.05)
        assert peak < 120 * 1024, f"envd grew to {peak} KiB"
        _, body = envd.unary("/process.Process/List", {})
        (p,) = body["processes"]  # still running: held back, not finished into a buffer
        assert envd.unary("/process.Process/SendSignal",
                          {"process": {"pid": p["pid"]}, "signal": "SIGNAL_SIGKILL"})[0] == 200
    assert envd.healthy()


def test_start_of_a_missing_program(envd):
    _, _, env = envd.stream("/process.Process/Start",
                            envelope({"process": {"cmd": "/no/such/program"}, "stdin": False}))
    err = end_error(env)
    assert err["code"] == "internal" and "No such file or directory" in err["message"], err
    assert len(env) == 1
    _, body = envd.unary("/process.Process/List", {})
    assert body == {"processes": []}
    # A relative command is looked up in PATH.
    _, _, env = envd.stream("/process.Process/Start", envelope({"process": {"cmd": "true"}, "stdin": False}))
    assert env[-2][1]["event"]["end"]["exited"] is True
    assert envd.healthy()


def test_fast_exits_are_never_lost(envd):
    # /bin/true often exits before envd has put it in its table (the reaper is quicker than the
    # spawner): every one of these streams must still end with its exit status.
    errors = []

    def worker():
        c = envd.conn(10)
        try:
            for _ in range(100):
                c.request("POST", "/process.Process/Start",
                          body=envelope({"process": {"cmd": "/bin/true"}, "stdin": False}),
                          headers={"Content-Type": "application/connect+json"})
                env = parse_envelopes(c.getresponse().read())
                if env[1:] != [(0, {"event": {"end": {"exited": True, "status": "exit status 0"}}}), (2, {})]:
                    errors.append(env)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def test_input_and_pty_calls_on_the_wrong_kind_of_process(envd):
    s = StartStream(envd, start_request("cat", stdin=True))
    sel = {"process": {"pid": s.pid}}
    # a resize needs a pty; pty input needs a pty
    status, body = envd.unary("/process.Process/Update", {**sel, "pty": {"size": {"cols": 10, "rows": 5}}})
    assert status == 400 and body["code"] == "failed_precondition"
    status, body = envd.unary("/process.Process/SendInput", {**sel, "input": {"pty": b64(b"x")}})
    assert status == 400 and body["code"] == "failed_precondition"
    # after CloseStdin, input is refused and cat ends
    assert envd.unary("/process.Process/SendInput", {**sel, "input": {"stdin": b64(b"last\n")}})[0] == 200
    assert envd.unary("/process.Process/CloseStdin", sel)[0] == 200
    status, body = envd.unary("/process.Process/SendInput", {**sel, "input": {"stdin": b64(b"more")}})
    assert status in (400, 404) and body["code"] in ("failed_precondition", "not_found")
    rest = s.rest()
    s.close()
    out = b"".join(base64.b64decode(o["event"]["data"]["stdout"]) for f, o in rest if "data" in o.get("event", {}))
    assert out == b"last\n"
    assert rest[-2][1]["event"]["end"]["status"] == "exit status 0"

    p = StartStream(envd, {"process": {"cmd": "/bin/sh"}, "pty": {"size": {"cols": 50, "rows": 7}}})
    sel = {"process": {"pid": p.pid}}
    status, body = envd.unary("/process.Process/CloseStdin", sel)
    assert status == 400 and body["code"] == "failed_precondition"
    assert envd.unary("/process.Process/SendInput", {**sel, "input": {"pty": b64(b"stty size; exit 4\n")}})[0] == 200
    rest = p.rest()
    p.close()
    out = b"".join(base64.b64decode(o["event"]["data"]["pty"]) for f, o in rest if "data" in o.get("event", {}))
    assert b"7 50" in out
    assert rest[-2][1]["event"]["end"]["exitCode"] == 4


def test_get_responses_keep_the_connection_alive(envd):
    # A response queued before MHD has seen the (empty) body closes the connection; clients
    # (undici, curl) then pay a new connection per request.
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", envd.port, timeout=10)
    for path in ("/health", "/envs", "/metrics", "/files?path=/etc/hostname"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status in (200, 204), (path, r.status)
        assert r.getheader("Connection", "").lower() != "close", path
    c.close()


def test_paths_below_files_are_not_files(envd):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", envd.port, timeout=10)
    c.request("POST", "/files/other", body=b"{}", headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.close()
