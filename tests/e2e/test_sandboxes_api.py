"""The sandbox endpoints of hutch serve with raw HTTP: validation, errors, framing, cleanup."""
import hashlib
import subprocess
import time
import json
import os

import pytest

from hutch_server import HutchServer, instance_leftovers


@pytest.fixture(scope="module")
def server(bindir, tmp_path_factory):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = HutchServer(bindir, tmp_path_factory.mktemp("api") / "state", port).start()
    srv.key = srv.create_key()
    yield srv
    assert srv.stop() == 0, srv.log()
    assert processes_in_cgroups_of(srv.state_dir) == []
    assert instance_leftovers(srv.state_dir) == []


def call(server, method, path, body=None, key=True, headers=None):
    h = dict(headers or {})
    if key:
        h["X-API-KEY"] = server.key
    status, hdrs, data = server.request(method, path, body=body, headers=h)
    return status, hdrs, (json.loads(data) if data else None)


def test_every_sandbox_endpoint_needs_a_valid_key(server):
    for method, path in (("POST", "/v2/sandboxes"), ("GET", "/v2/sandboxes"), ("GET", "/sandboxes/x"),
                         ("DELETE", "/sandboxes/x"), ("POST", "/sandboxes/x/timeout")):
        status, _, body = call(server, method, path, body={}, key=False)
        assert status == 401 and body["code"] == 401, path
        status, _, body = call(server, method, path, body={}, key=False,
                               headers={"X-API-KEY": "e2b_" + "0" * 40})
        assert status == 401 and body["message"] == "invalid API key", path


@pytest.mark.parametrize("body, needle", [
    ({}, "templateID"),
    ({"templateID": 5}, "templateID"),
    ({"templateID": "base", "timeout": 0}, "timeout"),
    ({"templateID": "base", "timeout": -3}, "timeout"),
    ({"templateID": "base", "timeout": "60"}, "timeout"),
    ({"templateID": "base", "timeout": 999999999}, "maximum"),
    ({"templateID": "base", "metadata": {"a": 1}}, "metadata.a"),
    ({"templateID": "base", "metadata": ["a"]}, "metadata"),
    ({"templateID": "base", "envVars": {"A": None}}, "envVars.A"),
    ({"templateID": "base", "autoPause": "yes"}, "autoPause"),
    ({"templateID": "base", "network": {"denyOut": ["example.com"]}}, "allowOut only"),
    ({"templateID": "base", "network": {"allowOut": ["bad name!"]}}, "bad name!"),
    ({"templateID": "base", "network": {"allowOut": ["a" * 300]}}, "allowOut[0]"),
])
def test_create_rejects_bad_bodies(server, body, needle):
    status, _, err = call(server, "POST", "/v2/sandboxes", body=body)
    assert status == 400, err
    assert err["code"] == 400 and needle in err["message"]


def test_create_rejects_malformed_json_and_huge_bodies(server):
    status, _, data = server.request("POST", "/v2/sandboxes", body=b'{"templateID": "base",',
                                     headers={"X-API-KEY": server.key, "Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["code"] == 400
    status, _, data = server.request("POST", "/v2/sandboxes", body=b'{"templateID": "\xff"}',
                                     headers={"X-API-KEY": server.key})
    assert status == 400
    status, _, data = server.request("POST", "/v2/sandboxes", body=b"[" * (3 << 20),
                                     headers={"X-API-KEY": server.key})
    assert status == 413


def test_unknown_template_is_404(server):
    status, _, err = call(server, "POST", "/v2/sandboxes", body={"templateID": "nope"})
    assert status == 404 and "template 'nope' not found" in err["message"]


def test_lifecycle_with_raw_http(server):
    status, _, sb = call(server, "POST", "/v2/sandboxes",
                         body={"templateID": "base", "timeout": 120, "metadata": {"who": "e2e"}})
    assert status == 201, sb
    assert set(sb) >= {"sandboxID", "templateID", "clientID", "envdVersion", "envdAccessToken"}
    assert sb["envdVersion"] == "0.6.13" and sb["domain"] is None
    sid = sb["sandboxID"]

    status, _, info = call(server, "GET", f"/sandboxes/{sid}")
    assert status == 200 and info["state"] == "running" and info["metadata"] == {"who": "e2e"}

    # envd through the gateway, with and without the sandbox's access token
    hdrs = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
    status, _, _ = server.request("GET", "/health", headers=hdrs)
    assert status == 204
    status, _, data = server.request("POST", "/process.Process/List", body={}, headers=hdrs)
    assert status == 401
    status, _, data = server.request("POST", "/process.Process/List", body={},
                                     headers={**hdrs, "X-Access-Token": sb["envdAccessToken"]})
    assert status == 200, data
    # /init, which would reset the token, never passes the gateway
    status, _, _ = server.request("POST", "/init", body={"accessToken": "mine"},
                                  headers={**hdrs, "X-Access-Token": sb["envdAccessToken"]})
    assert status == 403

    status, hdrs_, body = call(server, "POST", f"/sandboxes/{sid}/timeout", body={"timeout": 60})
    assert status == 204 and body is None
    status, _, body = call(server, "POST", f"/sandboxes/{sid}/refreshes", body={"duration": 30})
    assert status == 204
    status, _, body = call(server, "POST", f"/v2/sandboxes/{sid}/connect", body={"timeout": 10})
    assert status == 200 and body["sandboxID"] == sid

    status, _, listed = call(server, "GET", "/v2/sandboxes?state=running")
    assert status == 200 and sid in [s["sandboxID"] for s in listed]
    status, _, listed = call(server, "GET", "/sandboxes")
    assert status == 200 and sid in [s["sandboxID"] for s in listed]

    status, hdrs_, body = call(server, "DELETE", f"/sandboxes/{sid}")
    assert status == 204 and body is None
    status, _, body = call(server, "DELETE", f"/sandboxes/{sid}")
    assert status == 404 and body["code"] == 404
    status, _, body = call(server, "GET", f"/sandboxes/{sid}")
    assert status == 404
    status, _, data = server.request("GET", "/health", headers=hdrs)
    assert status == 502


def test_list_rejects_bad_filters(server):
    for q in ("state=dead", "state=", "order=sideways", "limit=0", "limit=abc", "nextToken=zzz", "nextToken=1_A",
              "metadata=novalue", "startedAfter=yesterday"):
        status, _, body = call(server, "GET", f"/v2/sandboxes?{q}")
        assert status == 400, q
        assert body["code"] == 400


def test_timeout_and_connect_of_unknown_sandbox(server):
    for path, body in (("/sandboxes/nosuch/timeout", {"timeout": 5}), ("/v2/sandboxes/nosuch/connect", {}),
                       ("/sandboxes/nosuch/refreshes", {})):
        status, _, err = call(server, "POST", path, body=body)
        assert status == 404 and err["code"] == 404, path
    status, _, err = call(server, "POST", "/sandboxes/nosuch/timeout", body={})
    assert status == 400


def processes_in_cgroups_of(state_dir):
    """Pids in the cgroups of the hutch instance that owns state_dir (hutch-<sha256[:12]>)."""
    tag = hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:12]
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if f"/hutch-{tag}/" in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_restart_forgets_sandboxes_of_the_dead_server_and_leaves_nothing(bindir, tmp_path, free_port):
    srv = HutchServer(bindir, tmp_path / "state", free_port).start()
    srv.key = srv.create_key()
    status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
    assert status == 201
    assert processes_in_cgroups_of(tmp_path / "state") != []
    srv.proc.kill()  # SIGKILL: no chance to clean up
    srv.proc.wait()
    srv.start()
    try:
        status, _, body = call(srv, "GET", f"/sandboxes/{sb['sandboxID']}")
        assert status == 404
        assert processes_in_cgroups_of(tmp_path / "state") == []
        status, _, sb2 = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
        assert status == 201
    finally:
        assert srv.stop() == 0, srv.log()


def metric(server, name):
    for line in server.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_creates(server):
    creates = metric(server, "hutch_sandbox_creates_total")
    failures = metric(server, "hutch_sandbox_create_failures_total")
    status, _, sb = call(server, "POST", "/v2/sandboxes", body={"templateID": "base"})
    assert status == 201
    assert metric(server, 'hutch_sandboxes{state="running"}') >= 1
    call(server, "DELETE", f"/sandboxes/{sb['sandboxID']}")
    assert metric(server, "hutch_sandbox_creates_total") == creates + 1
    assert metric(server, 'hutch_sandbox_create_seconds_bucket{le="+Inf"}') >= creates + 1
    call(server, "POST", "/v2/sandboxes", body={"templateID": "nope"})
    assert metric(server, "hutch_sandbox_create_failures_total") == failures


def test_logs_are_envd_output_as_structured_entries(server):
    status, _, sb = call(server, "POST", "/v2/sandboxes", body={"templateID": "base"})
    assert status == 201
    sid = sb["sandboxID"]
    try:
        status, _, body = call(server, "GET", f"/sandboxes/{sid}/logs")
        assert status == 200
        assert len(body["logs"]) == len(body["logEntries"]) >= 1
        messages = [e["message"] for e in body["logEntries"]]
        assert any("listening on 127.0.0.1:49983" in m for m in messages), messages
        assert all(e["level"] in ("debug", "info", "warn", "error") for e in body["logEntries"])
        assert all(e["fields"].get("program") == "envd" for e in body["logEntries"])
        status, _, body = call(server, "GET", f"/sandboxes/{sid}/logs?start=99999999999999")
        assert status == 200 and body["logs"] == []
        status, _, body = call(server, "GET", f"/v2/sandboxes/{sid}/logs?level=warn")
        assert status == 200 and all(e["level"] in ("warn", "error") for e in body["logs"])
        status, _, body = call(server, "GET", f"/v2/sandboxes/{sid}/logs?search=listening")
        assert status == 200 and len(body["logs"]) == 1
        for bad in ("start=-1", "start=x", "limit=0", "limit=100000"):
            assert call(server, "GET", f"/sandboxes/{sid}/logs?{bad}")[0] == 400, bad
    finally:
        call(server, "DELETE", f"/sandboxes/{sid}")
    assert call(server, "GET", f"/sandboxes/{sid}/logs")[0] == 404


def test_pause_and_resume_with_raw_http(server):
    status, _, sb = call(server, "POST", "/v2/sandboxes", body={"templateID": "base"})
    sid = sb["sandboxID"]
    hdrs = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
    try:
        assert call(server, "POST", f"/sandboxes/{sid}/resume", body={})[0] == 409  # running
        status, _, body = call(server, "POST", f"/sandboxes/{sid}/pause", body={})
        assert status == 204 and body is None
        status, _, body = call(server, "POST", f"/sandboxes/{sid}/pause", body={})
        assert status == 409 and body["code"] == 409
        status, _, info = call(server, "GET", f"/sandboxes/{sid}")
        assert info["state"] == "paused" and info["pauseMode"] == "memory"
        assert metric(server, 'hutch_sandboxes{state="paused"}') >= 1
        status, _, data = server.request("GET", "/health", headers=hdrs)
        assert status == 502 and "paused" in json.loads(data)["message"]
        status, _, body = call(server, "POST", f"/sandboxes/{sid}/resume", body={"timeout": 60})
        assert status == 201 and body["sandboxID"] == sid
        assert server.request("GET", "/health", headers=hdrs)[0] == 204
        call(server, "POST", f"/sandboxes/{sid}/pause", body={})
        status, _, body = call(server, "POST", f"/v2/sandboxes/{sid}/connect", body={"timeout": 60})
        assert status == 201
        status, _, body = call(server, "POST", f"/v2/sandboxes/{sid}/connect", body={"timeout": 60})
        assert status == 200
    finally:
        call(server, "DELETE", f"/sandboxes/{sid}")
    for path in ("/sandboxes/nosuch/pause", "/sandboxes/nosuch/resume", "/v2/sandboxes/nosuch/connect"):
        assert call(server, "POST", path, body={})[0] == 404, path


def test_killing_a_paused_sandbox_leaves_nothing(server):
    status, _, sb = call(server, "POST", "/v2/sandboxes", body={"templateID": "base"})
    assert call(server, "POST", f"/sandboxes/{sb['sandboxID']}/pause", body={})[0] == 204
    assert call(server, "DELETE", f"/sandboxes/{sb['sandboxID']}")[0] == 204
    assert call(server, "GET", f"/sandboxes/{sb['sandboxID']}")[0] == 404


def test_kill_9_during_creates_and_streams_leaves_nothing(bindir, tmp_path, free_port):
    import http.client
    import struct
    import threading
    srv = HutchServer(bindir, tmp_path / "state", free_port).start()
    srv.key = srv.create_key()
    status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
    assert status == 201
    # A command streaming output through the gateway while the server dies.
    payload = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-c", "while :; do echo tick; sleep 0.01; done"]},
                          "stdin": False}).encode()
    stream = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    stream.request("POST", "/process.Process/Start", body=struct.pack(">BI", 0, len(payload)) + payload, headers={
        "E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "49983", "X-Access-Token": sb["envdAccessToken"],
        "Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"})
    resp = stream.getresponse()
    assert resp.status == 200
    resp.read(64)
    # Creates in flight.
    results = []

    def create():
        try:
            results.append(call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})[0])
        except OSError as e:
            results.append(e)
    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.03)
    srv.proc.kill()
    srv.proc.wait()
    for t in threads:
        t.join(timeout=30)
    stream.close()
    assert processes_in_cgroups_of(tmp_path / "state") != []  # the dead server's sandboxes linger...
    srv.start()
    try:
        assert processes_in_cgroups_of(tmp_path / "state") == []  # ...until the restart removes them
        status, _, listed = call(srv, "GET", "/v2/sandboxes")
        assert status == 200 and listed == []
        status, _, sb2 = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
        assert status == 201
        call(srv, "DELETE", f"/sandboxes/{sb2['sandboxID']}")
    finally:
        assert srv.stop() == 0, srv.log()
    assert processes_in_cgroups_of(tmp_path / "state") == []
    assert instance_leftovers(tmp_path / "state") == []


def test_per_request_limits_within_the_maximums(server):
    status, _, sb = call(server, "POST", "/v2/sandboxes",
                         body={"templateID": "base", "cpuCount": 1, "memoryMB": 256, "diskSizeMB": 64})
    assert status == 201, sb
    try:
        status, _, info = call(server, "GET", f"/sandboxes/{sb['sandboxID']}")
        assert (info["cpuCount"], info["memoryMB"], info["diskSizeMB"]) == (1, 256, 64)
        status, _, m = call(server, "GET", f"/sandboxes/{sb['sandboxID']}/metrics")
        assert m[-1]["memTotal"] == 256 << 20 and m[-1]["diskTotal"] == 64 << 20
    finally:
        call(server, "DELETE", f"/sandboxes/{sb['sandboxID']}")
    for body in ({"cpuCount": 9999}, {"memoryMB": 1 << 21}, {"diskSizeMB": 1 << 23}, {"memoryMB": 8},
                 {"cpuCount": 0}, {"memoryMB": "512"}):
        status, _, err = call(server, "POST", "/v2/sandboxes", body={"templateID": "base", **body})
        assert status == 400, body


def test_server_limits_from_the_command_line(bindir, tmp_path, free_port):
    srv = HutchServer(bindir, tmp_path / "state", free_port)
    srv.extra_args = ["--default-cpus", "1", "--default-memory-mb", "256", "--default-disk-mb", "128",
                      "--max-cpus", "2", "--max-timeout", "60", "--max-sandboxes", "1"]
    srv.start()
    srv.key = srv.create_key()
    try:
        status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
        assert status == 201
        status, _, info = call(srv, "GET", f"/sandboxes/{sb['sandboxID']}")
        assert (info["cpuCount"], info["memoryMB"], info["diskSizeMB"]) == (1, 256, 128)
        status, _, err = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base"})
        assert status == 503 and "maximum of 1" in err["message"]
        call(srv, "DELETE", f"/sandboxes/{sb['sandboxID']}")
        assert call(srv, "POST", "/v2/sandboxes", body={"templateID": "base", "cpuCount": 3})[0] == 400
        assert call(srv, "POST", "/v2/sandboxes", body={"templateID": "base", "timeout": 61})[0] == 400
    finally:
        assert srv.stop() == 0, srv.log()


@pytest.mark.parametrize("args", [["--default-cpus", "0"], ["--max-sandboxes", "x"],
                                  ["--default-cpus", "4", "--max-cpus", "2"]])
def test_bad_server_limits_are_refused(bindir, tmp_path, args):
    p = subprocess.run([str(bindir / "hutch"), "serve", "--listen", "127.0.0.1:0", "--state-dir",
                        str(tmp_path / "s"), *args], capture_output=True, text=True, timeout=20)
    assert p.returncode in (1, 2), p.stderr
    assert p.stderr


def test_warm_pool_hands_out_started_sandboxes_with_their_own_tokens(bindir, tmp_path, free_port):
    srv = HutchServer(bindir, tmp_path / "state", free_port)
    srv.extra_args = ["--warm-pool", "2"]
    srv.start()
    srv.key = srv.create_key()
    try:
        deadline = time.monotonic() + 20
        while metric(srv, "hutch_warm_pool_sandboxes") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(srv, "hutch_warm_pool_sandboxes") == 2
        made = []
        for i in range(3):
            status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base", "envVars": {"N": str(i)}})
            assert status == 201, sb
            made.append(sb)
        assert metric(srv, "hutch_warm_pool_hits_total") >= 2
        assert len({sb["envdAccessToken"] for sb in made}) == 3
        for i, sb in enumerate(made):
            hdrs = {"E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "49983"}
            # The sandbox's own token works, and a sandbox-wide env var from its create arrived.
            status, _, data = srv.request("GET", "/envs", headers={**hdrs, "X-Access-Token": sb["envdAccessToken"]})
            assert status == 200 and json.loads(data) == {"N": str(i)}
            status, _, _ = srv.request("GET", "/envs", headers={**hdrs, "X-Access-Token": made[i - 1]["envdAccessToken"]})
            assert status == 401
        # A create that asks for other limits or no internet is not served from the pool.
        hits = metric(srv, "hutch_warm_pool_hits_total")
        status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base", "allow_internet_access": False})
        assert status == 201
        assert metric(srv, "hutch_warm_pool_hits_total") == hits
        status, _, sb = call(srv, "POST", "/v2/sandboxes", body={"templateID": "base", "network": {"httpsPorts": [8443]}})
        assert status == 201
        assert metric(srv, "hutch_warm_pool_hits_total") == hits
    finally:
        assert srv.stop() == 0, srv.log()
    assert processes_in_cgroups_of(tmp_path / "state") == []
    assert instance_leftovers(tmp_path / "state") == []


def test_a_slot_left_dirty_by_a_dead_server_is_cleaned_before_use(server):
    # A server killed in the middle of an online create can leave its veth (named after the
    # slot) on the host; the next holder of the slot must not fail on it. Plant leftovers for
    # the lowest slots, which the next create takes.
    # (A name that exists already belongs to a live sandbox of another server on this host.)
    planted = []
    for name in (f"hv{i}" for i in range(4)):
        if subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "x"],
                          capture_output=True).returncode == 0:
            planted.append(name)
    try:
        status, _, sb = call(server, "POST", "/v2/sandboxes", body={"templateID": "base"})
        assert status == 201, sb
        call(server, "DELETE", f"/sandboxes/{sb['sandboxID']}")
    finally:
        for name in planted:
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_teams_answers_the_callers_team_with_its_key(server):
    status, _, teams = call(server, "GET", "/teams")
    assert status == 200, teams
    assert len(teams) == 1
    team = teams[0]
    assert set(team) == {"teamID", "name", "apiKey", "isDefault"}
    assert team["apiKey"] == server.key and team["isDefault"] is True and team["name"]
    assert len(team["teamID"]) == 36 and team["teamID"].count("-") == 4
    # Stable: the same id for another key of the same server.
    other = server.create_key()
    status, _, again = call(server, "GET", "/teams", key=False, headers={"X-API-KEY": other})
    assert status == 200 and again[0]["teamID"] == team["teamID"] and again[0]["apiKey"] == other


def test_teams_refuses_access_tokens_and_bad_keys(server):
    status, _, err = call(server, "GET", "/teams", key=False, headers={"Authorization": "Bearer sk_e2b_abc"})
    assert status == 401 and err["code"] == 401
    assert "access token" in err["message"] and "hutch key create" in err["message"]
    status, _, err = call(server, "GET", "/teams", key=False)
    assert status == 401 and "X-API-KEY" in err["message"]
    status, _, err = call(server, "GET", "/teams", key=False, headers={"X-API-KEY": "e2b_" + "0" * 40})
    assert status == 401 and err["message"] == "invalid API key"


HTTPS_BASE = {"allowOut": ["example.com"], "denyOut": ["0.0.0.0/0"]}


@pytest.mark.parametrize("ports, needle", [
    ([80], "port 80"),
    ([8443, 80], "port 80"),
    ([0], "httpsPorts[0]"),
    ([65536], "httpsPorts[0]"),
    ([-443], "httpsPorts[0]"),
    ([8443, "9443"], "httpsPorts[1]"),
    ([8443.0], "httpsPorts[0]"),
    ([8443, 9443, 8443], "listed twice"),
    (list(range(8000, 8017)), "at most 16"),
    ("8443", "array"),
    ({"port": 8443}, "array"),
])
def test_network_https_ports_are_validated(server, ports, needle):
    for path in ("/v2/sandboxes", "/sandboxes"):
        status, _, err = call(server, "POST", path,
                              body={"templateID": "base", "network": {**HTTPS_BASE, "httpsPorts": ports}})
        assert status == 400 and needle in err["message"], (path, err)


def redirected_ports(sid):
    """The TCP ports the sandbox's px_ chain sends to the egress proxy (empty: no redirect)."""
    out = subprocess.run(["nft", "list", "chain", "inet", "hutch", "px_" + sid.replace("-", "_")],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "redirect to" in line:
            ports = line.split("dport")[1].split("redirect")[0].strip()
            return sorted(int(p) for p in ports.strip("{} ").split(",")) if "{" in ports else [int(ports)]
    return []


def test_network_https_ports_at_create_update_pause_and_restart(bindir, tmp_path, free_port):
    srv = HutchServer(bindir, tmp_path / "state", free_port).start()
    srv.key = srv.create_key()
    try:
        # Without names httpsPorts is accepted and has no effect; 443 in the list is harmless.
        status, _, sb = call(srv, "POST", "/sandboxes",
                             body={"templateID": "base", "network": {"httpsPorts": [8443, 443]}})
        assert status == 201, sb
        assert redirected_ports(sb["sandboxID"]) == []
        call(srv, "DELETE", f"/sandboxes/{sb['sandboxID']}")
        status, _, sb = call(srv, "POST", "/v2/sandboxes",
                             body={"templateID": "base", "network": {**HTTPS_BASE, "httpsPorts": [8443, 443, 3000]}})
        assert status == 201, sb
        sid = sb["sandboxID"]
        assert redirected_ports(sid) == [80, 443, 3000, 8443]
        status, _, err = call(srv, "PUT", f"/sandboxes/{sid}/network", body={**HTTPS_BASE, "httpsPorts": [80]})
        assert status == 400 and "port 80" in err["message"], err
        assert redirected_ports(sid) == [80, 443, 3000, 8443]
        # A body without httpsPorts keeps them (E2B's SDKs send none on update); one with them replaces.
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body=HTTPS_BASE)[0] == 204
        assert redirected_ports(sid) == [80, 443, 3000, 8443]
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body={**HTTPS_BASE, "httpsPorts": [9443]})[0] == 204
        assert redirected_ports(sid) == [80, 443, 9443]
        # Without names nothing is redirected, and the ports are kept for when names come back.
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body={"denyOut": ["0.0.0.0/0"]})[0] == 204
        assert redirected_ports(sid) == []
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body=HTTPS_BASE)[0] == 204
        assert redirected_ports(sid) == [80, 443, 9443]
        # Kept by a pause to the filesystem across a restart of the server.
        assert call(srv, "POST", f"/sandboxes/{sid}/pause", body={"memory": False})[0] == 204
        assert redirected_ports(sid) == []
        assert srv.stop() == 0, srv.log()
        srv.start()
        status, _, body = call(srv, "POST", f"/sandboxes/{sid}/resume", body={"timeout": 60})
        assert status == 201, body
        assert redirected_ports(sid) == [80, 443, 9443]
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body={**HTTPS_BASE, "httpsPorts": None})[0] == 204
        assert redirected_ports(sid) == [80, 443]
        call(srv, "DELETE", f"/sandboxes/{sid}")
        assert redirected_ports(sid) == []
    finally:
        assert srv.stop() == 0, srv.log()
    assert processes_in_cgroups_of(tmp_path / "state") == []
    assert instance_leftovers(tmp_path / "state") == []


@pytest.mark.parametrize("network, needle", [
    ({"allowPublicTraffic": "no"}, "allowPublicTraffic must be a boolean"),
    ({"allowPublicTraffic": 0}, "allowPublicTraffic must be a boolean"),
    ({"maskRequestHost": 5}, "maskRequestHost must be a string"),
    ({"maskRequestHost": ""}, "maskRequestHost must be a string"),
    ({"maskRequestHost": "x" * 256}, "maskRequestHost must be a string"),
    ({"maskRequestHost": ["example.com"]}, "maskRequestHost must be a string"),
    ({"maskRequestHost": "a b"}, "mask request host is not valid"),
    ({"maskRequestHost": "example.com\r\nX-Evil: 1"}, "mask request host is not valid"),
    ({"maskRequestHost": "http://example.com"}, "mask request host is not valid"),
    ({"maskRequestHost": "example.com/path"}, "mask request host is not valid"),
    ({"maskRequestHost": "example.com:99999"}, "mask request host is not valid"),
    ({"maskRequestHost": "example.com:"}, "mask request host is not valid"),
    ({"maskRequestHost": "example.com:8a"}, "mask request host is not valid"),
    ({"maskRequestHost": "bücher.example"}, "mask request host is not valid"),
    ({"maskRequestHost": "[::1"}, "mask request host is not valid"),
    ({"maskRequestHost": ":8080"}, "mask request host is not valid"),
])
def test_network_ingress_is_validated(server, network, needle):
    for path in ("/v2/sandboxes", "/sandboxes"):
        status, _, err = call(server, "POST", path, body={"templateID": "base", "network": network})
        assert status == 400 and needle in err["message"], (path, err)


def test_network_ingress_token_and_mask_kept_across_pause_and_restart(bindir, tmp_path, free_port):
    srv = HutchServer(bindir, tmp_path / "state", free_port).start()
    srv.key = srv.create_key()
    try:
        # Accepted forms of maskRequestHost; a default sandbox has trafficAccessToken null.
        for mask in ("example.com", "[::1]:8080", "${PORT}.example.test", "localhost:${PORT}"):
            status, _, sb = call(srv, "POST", "/v2/sandboxes",
                                 body={"templateID": "base", "network": {"maskRequestHost": mask}})
            assert status == 201, (mask, sb)
            assert sb["trafficAccessToken"] is None
            info = call(srv, "GET", f"/sandboxes/{sb['sandboxID']}")[2]
            assert info["network"] == {"allowPublicTraffic": True, "maskRequestHost": mask}
            call(srv, "DELETE", f"/sandboxes/{sb['sandboxID']}")

        status, _, sb = call(srv, "POST", "/v2/sandboxes", body={
            "templateID": "base",
            "network": {"allowPublicTraffic": False, "maskRequestHost": "app.test:${PORT}", "denyOut": ["10.1.0.0/16"]}})
        assert status == 201, sb
        sid, token = sb["sandboxID"], sb["trafficAccessToken"]
        assert len(token) == 64 and token != sb["envdAccessToken"]
        want = {"allowPublicTraffic": False, "maskRequestHost": "app.test:${PORT}", "denyOut": ["10.1.0.0/16"]}
        assert call(srv, "GET", f"/sandboxes/{sid}")[2]["network"] == want
        # A network update keeps them.
        assert call(srv, "PUT", f"/sandboxes/{sid}/network", body={"denyOut": ["10.2.0.0/16"]})[0] == 204
        want["denyOut"] = ["10.2.0.0/16"]
        assert call(srv, "GET", f"/sandboxes/{sid}")[2]["network"] == want

        def user_port(headers):
            status, _, data = srv.request("GET", "/", headers={"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "8000",
                                                               **headers})
            return status, json.loads(data) if data else None

        status, body = user_port({})
        assert status == 403 and "is missing" in body["message"] and body["sandboxId"] == sid, body
        status, body = user_port({"E2B-Traffic-Access-Token": token.upper()})
        assert status == 403 and "is invalid" in body["message"], body
        assert user_port({"e2b-traffic-access-token": token})[0] == 502  # nothing listens on 8000
        # Paused to the filesystem, then the server restarts: the token and the mask come back.
        assert call(srv, "POST", f"/sandboxes/{sid}/pause", body={"memory": False})[0] == 204
        assert srv.stop() == 0, srv.log()
        srv.start()
        assert call(srv, "GET", f"/sandboxes/{sid}")[2]["network"] == want
        assert user_port({})[0] == 403
        status, _, body = call(srv, "POST", f"/sandboxes/{sid}/connect", body={"timeout": 60})
        assert status == 201 and body["trafficAccessToken"] == token, body
        assert user_port({})[0] == 403
        assert user_port({"E2B-Traffic-Access-Token": token})[0] == 502
        call(srv, "DELETE", f"/sandboxes/{sid}")
    finally:
        assert srv.stop() == 0, srv.log()
    assert processes_in_cgroups_of(tmp_path / "state") == []
    assert instance_leftovers(tmp_path / "state") == []
