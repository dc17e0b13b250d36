"""hutch serve: the listener, framing rules of e2b-compat §2.2, authentication, errors."""
import http.client
import json
import socket

import pytest

from hutch_server import HutchServer, instance_leftovers


@pytest.fixture
def server(bindir, tmp_path, free_port):
    s = HutchServer(bindir, tmp_path / "state", free_port).start()
    yield s
    assert s.stop() == 0, s.log()
    assert instance_leftovers(s.state_dir) == []


def error_body(data, status):
    body = json.loads(data)
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_health_is_public(server):
    status, headers, data = server.request("GET", "/health")
    assert status == 200
    assert data == b"Health check successful"


def test_first_start_says_how_to_get_a_key(server):
    assert "hutch key create --state-dir" in server.log()


def test_unknown_endpoint_is_json_404(server):
    status, headers, data = server.request("GET", "/nope")
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert "GET /nope" in error_body(data, 404)["message"]


def test_wrong_method_is_405(server):
    status, _, data = server.request("DELETE", "/health")
    assert status == 405
    error_body(data, 405)


def test_oversized_body_is_413_and_server_survives(server):
    status, _, data = server.request("POST", "/health", body=b"x" * (2 << 20))
    assert status == 413
    error_body(data, 413)
    assert server.request("GET", "/health")[0] == 200


def test_chunked_request_body_is_read(server):
    # Node's undici sends control-plane bodies chunked (§2.2).
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.putrequest("POST", "/health")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for part in (b'{"a":', b'1}'):
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    r.read()
    assert r.status == 405
    c.close()


def test_keep_alive_serves_several_requests_on_one_connection(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(5):
        status, _, _ = server.request("GET", "/health", conn=c)
        assert status == 200
    c.close()


def test_garbage_request_line_does_not_kill_the_server(server):
    for junk in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n",
                 b"POST /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(1)
            try:
                s.recv(4096)
            except TimeoutError:
                pass
    assert server.request("GET", "/health")[0] == 200


def test_address_in_use_is_a_clear_error(bindir, tmp_path, server):
    import subprocess
    p = subprocess.run([str(bindir / "hutch"), "serve", "--listen", f"127.0.0.1:{server.port}",
                        "--state-dir", str(tmp_path / "other")], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1
    assert "Address already in use" in p.stderr


def test_bad_listen_address(bindir, tmp_path):
    import subprocess
    p = subprocess.run([str(bindir / "hutch"), "serve", "--listen", "localhost", "--state-dir",
                        str(tmp_path / "s")], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "not ADDR:PORT" in p.stderr


def test_sandbox_traffic_for_an_unknown_sandbox_is_502(server):
    # e2b-compat 1.4: sandbox gone -> 502 {"sandboxId","message","code":502}; the SDK maps it to
    # "sandbox is not running".
    status, headers, data = server.request(
        "POST", "/process.Process/List", body={},
        headers={"E2b-Sandbox-Id": "abc123", "E2b-Sandbox-Port": "49983"})
    assert status == 502
    body = json.loads(data)
    assert body == {"sandboxId": "abc123", "message": body["message"], "code": 502}


def test_half_routed_sandbox_traffic_is_400(server):
    status, _, data = server.request("GET", "/health", headers={"E2b-Sandbox-Id": "abc123"})
    assert status == 400
    assert "E2b-Sandbox-Port" in error_body(data, 400)["message"]


def test_envd_internal_routes_are_never_forwarded(server):
    for path in ("/init", "//init", "/%69nit", "/freeze", "/upgrade"):
        status, _, data = server.request(
            "POST", path, body={"accessToken": "x"},
            headers={"E2b-Sandbox-Id": "abc123", "E2b-Sandbox-Port": "49983"})
        assert status == 403, path
        error_body(data, 403)


def test_openapi_document_is_served(server):
    status, headers, data = server.request("GET", "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(data)
    assert doc["openapi"].startswith("3.")
    assert "/v2/sandboxes" in doc["paths"] and "post" in doc["paths"]["/v2/sandboxes"]


def test_prometheus_metrics(server):
    status, headers, data = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = data.decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['hutch_sandboxes{state="running"}'] == 0
    before = samples["hutch_gateway_unreachable_total"]
    server.request("GET", "/health", headers={"E2b-Sandbox-Id": "gone", "E2b-Sandbox-Port": "49983"})
    after = server.request("GET", "/metrics")[2].decode()
    assert f"hutch_gateway_unreachable_total {int(before) + 1}" in after
    assert 'hutch_sandbox_create_seconds_bucket{le="+Inf"}' in text


def test_a_stop_during_a_streamed_command_is_prompt_and_leaves_nothing(bindir, tmp_path, free_port):
    # A gateway stream waiting on a sandbox (a command still running) must not hold the
    # server's stop: the sandbox is then killed, nothing stays on the host.
    import os
    import subprocess
    import time
    srv = HutchServer(bindir, tmp_path / "state", free_port).start()
    key = srv.create_key()
    env = dict(os.environ, E2B_API_KEY=key, E2B_API_URL=f"http://127.0.0.1:{free_port}")
    hutch = str(bindir / "hutch")
    sid = subprocess.run([hutch, "sandbox", "create"], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout.strip()
    p = subprocess.Popen([hutch, "exec", sid, "--", "sh", "-c", "echo go; sleep 100"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"go\n"
        began = time.monotonic()
        assert srv.stop() == 0, srv.log()
        # stop() sends SIGKILL after 10 s: a clean exit well before that is the point.
        assert time.monotonic() - began < 8
    finally:
        p.kill()
        p.wait()
    assert instance_leftovers(tmp_path / "state") == []
