"""The template endpoints of hutch serve (e2b-compat 2.7, and the snapshot listing of 2.3) with
raw HTTP: request a build, the COPY file cache and its signed upload, build start validation,
build status and log paging, names, tags, listing, publishing, deletion.

None of these tests waits for a build to finish: that a started build completes (and what a
sandbox made from it holds) is tested with the real builder and the official SDK in tests/sdk.
Build logs and a failed status are written into the store directly here, to check how the API
pages and shapes them."""
import gzip
import http.client
import json
import os
import re
import socket
import sqlite3
import stat
import time
import urllib.parse

import pytest

from hutch_server import HutchServer

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEMPLATE_FIELDS = {"templateID", "buildID", "cpuCount", "memoryMB", "diskSizeMB", "public", "aliases", "names",
                   "createdAt", "updatedAt", "createdBy", "lastSpawnedAt", "spawnCount", "buildCount",
                   "envdVersion", "buildStatus"}
HASH_A = "a" * 64
HASH_B = "b" * 64


@pytest.fixture(scope="module")
def server(bindir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = HutchServer(bindir, tmp_path_factory.mktemp("templates") / "state", port).start()
    srv.key = srv.create_key()
    yield srv
    assert srv.stop() == 0, srv.log()


def call(server, method, path, body=None, key=True, headers=None):
    h = dict(headers or {})
    if key:
        h["X-API-KEY"] = server.key
    status, hdrs, data = server.request(method, path, body=body, headers=h)
    return status, hdrs, (json.loads(data) if data else None)


def request_build(server, name, **extra):
    status, _, body = call(server, "POST", "/v3/templates", body={"name": name, **extra})
    assert status == 202, body
    return body


def put(server, url, body, headers=None, chunked=False):
    """PUT to an upload URL as the SDK does: no API key, a Content-Length (unless chunked)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        if chunked:
            c.putrequest("PUT", path)
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            c.request("PUT", path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), (json.loads(data) if data else None)
    finally:
        c.close()


def upload_url(server, template_id, h):
    status, _, body = call(server, "GET", f"/templates/{template_id}/files/{h}")
    assert status == 201, body
    assert body["present"] is False and body["url"], body
    return body["url"]


def test_template_endpoints_need_a_key_but_the_upload_does_not(server):
    for method, path in (("POST", "/v3/templates"), ("GET", "/templates"), ("GET", "/v2/templates"),
                         ("GET", "/templates/base"), ("DELETE", "/templates/base"),
                         ("GET", "/templates/aliases/base"), ("POST", "/templates/tags"),
                         ("GET", f"/templates/base/files/{HASH_A}"), ("GET", "/snapshots"),
                         ("POST", "/v2/templates/base/builds/x"), ("GET", "/templates/base/builds/x/status")):
        status, _, body = call(server, method, path, body={}, key=False)
        assert status == 401 and body["code"] == 401, (method, path)
    # The upload needs its token instead, and says so.
    status, _, body = put(server, f"http://127.0.0.1:{server.port}/upload/templates/base/files/{HASH_A}",
                          b"\x1f\x8b....")
    assert status == 403 and body["code"] == 403 and "token" in body["message"]


def test_base_is_listed_with_every_field(server):
    for path in ("/templates", "/templates?teamID=whatever", "/v2/templates"):
        status, _, items = call(server, "GET", path)
        assert status == 200
        base = [t for t in items if t["templateID"] == "base"]
        assert len(base) == 1, items
        t = base[0]
        assert set(t) >= TEMPLATE_FIELDS, TEMPLATE_FIELDS - set(t)
        assert t["names"] == ["base"] and t["aliases"] == ["base"]
        assert t["buildStatus"] == "ready" and t["buildCount"] == 1 and t["buildID"]
        assert t["envdVersion"] == "0.6.13" and t["createdBy"] is None and t["lastSpawnedAt"] is None
        assert isinstance(t["spawnCount"], int) and t["cpuCount"] >= 1 and t["memoryMB"] >= 128
        assert RFC3339_MS.match(t["createdAt"]) and RFC3339_MS.match(t["updatedAt"])


def test_request_build(server):
    b = request_build(server, "e2e-req:v1", cpuCount=2, memoryMB=1024, tags=["v2", "v1"])
    assert set(b) == {"templateID", "buildID", "names", "tags", "aliases", "public"}
    assert re.match(r"^[a-z0-9]{20}$", b["templateID"]) and UUID4.match(b["buildID"])
    assert b["names"] == ["e2e-req"] and b["aliases"] == ["e2e-req"] and b["public"] is False
    assert b["tags"] == ["v1", "v2"]
    # The same name again: a new build of the same template.
    b2 = request_build(server, "e2e-req", alias="ignored-when-name-is-set")
    assert b2["templateID"] == b["templateID"] and b2["buildID"] != b["buildID"]
    assert b2["tags"] == ["default"]
    # The deprecated spelling.
    status, _, b3 = call(server, "POST", "/v3/templates", body={"alias": "e2e-req-alias"})
    assert status == 202 and b3["names"] == ["e2e-req-alias"]

    status, _, t = call(server, "GET", f"/templates/{b['templateID']}")
    assert status == 200
    assert set(t) >= {"templateID", "public", "aliases", "names", "createdAt", "updatedAt", "lastSpawnedAt",
                      "spawnCount", "builds"}
    assert [x["buildID"] for x in t["builds"]] == [b2["buildID"], b["buildID"]]  # newest first
    first = t["builds"][1]
    assert set(first) >= {"buildID", "status", "createdAt", "updatedAt", "cpuCount", "memoryMB"}
    assert first["status"] == "waiting" and first["cpuCount"] == 2 and first["memoryMB"] == 1024
    assert "finishedAt" not in first
    # by name, too
    status, _, t2 = call(server, "GET", "/templates/e2e-req")
    assert status == 200 and t2["templateID"] == b["templateID"]
    status, _, err = call(server, "GET", "/templates/nope-nothing")
    assert status == 404 and err["code"] == 404

    status, _, items = call(server, "GET", "/templates")
    mine = [x for x in items if x["templateID"] == b["templateID"]][0]
    assert set(mine) >= TEMPLATE_FIELDS
    assert mine["buildStatus"] == "waiting" and mine["buildCount"] == 2


@pytest.mark.parametrize("body, needle", [
    ({}, "name"),
    ({"name": 5}, "name"),
    ({"name": "Upper"}, "invalid template name"),
    ({"name": "-dash"}, "invalid template name"),
    ({"name": "a/b"}, "invalid template name"),
    ({"name": "x" * 129}, "128"),
    ({"name": "ok:"}, "invalid tag"),
    ({"name": "ok:bad tag"}, "invalid tag"),
    ({"name": "ok:" + "t" * 65}, "invalid tag"),
    ({"name": "ok", "tags": "v1"}, "tags"),
    ({"name": "ok", "tags": [1]}, "tags[0]"),
    ({"name": "ok", "cpuCount": 0}, "cpuCount"),
    ({"name": "ok", "cpuCount": "2"}, "cpuCount"),
    ({"name": "ok", "memoryMB": 1025}, "even"),
    ({"name": "ok", "memoryMB": 64}, "memoryMB"),
    ({"name": "ok", "minFreeDiskMb": -1}, "minFreeDiskMb"),
])
def test_request_build_rejects_bad_bodies(server, body, needle):
    status, _, err = call(server, "POST", "/v3/templates", body=body)
    assert status == 400 and err["code"] == 400, err
    assert needle in err["message"], err


def test_files_upload_and_cache(server):
    tid = request_build(server, "e2e-files")["templateID"]
    for bad in ("abc", HASH_A.upper(), HASH_A + "a", "g" * 64):
        status, _, err = call(server, "GET", f"/templates/{tid}/files/{bad}")
        assert status == 400 and err["code"] == 400, bad
    status, _, err = call(server, "GET", f"/templates/nope-nothing/files/{HASH_A}")
    assert status == 404

    url = upload_url(server, tid, HASH_A)
    u = urllib.parse.urlsplit(url)
    assert u.scheme == "http" and u.netloc == f"127.0.0.1:{server.port}"  # the Host the client used
    assert u.path == f"/upload/templates/{tid}/files/{HASH_A}"
    q = urllib.parse.parse_qs(u.query)
    assert int(q["expires"][0]) > time.time() + 600 and re.match(r"^[0-9a-f]{64}$", q["token"][0])
    # The URL follows the Host header.
    status, _, body = call(server, "GET", f"/templates/{tid}/files/{HASH_A}",
                           headers={"Host": f"localhost:{server.port}"})
    assert body["url"].startswith(f"http://localhost:{server.port}/upload/")

    data = gzip.compress(b"a tar would be here" * 1000)
    token_free = url.split("?")[0]
    bad_token = url[:-1] + ("0" if url[-1] != "0" else "1")
    later = url.replace(f"expires={q['expires'][0]}", f"expires={int(q['expires'][0]) + 1000}")
    other_hash = url.replace(HASH_A, HASH_B)
    for u_, why in ((token_free, "missing"), (bad_token, "invalid"), (later, "invalid"), (other_hash, "invalid")):
        status, _, err = put(server, u_, data)
        assert status == 403 and err["code"] == 403 and why in err["message"], (u_, err)
    status, _, err = put(server, url, b"PK\x03\x04 not gzip" * 10)
    assert status == 400 and "gzip" in err["message"]
    status, _, err = put(server, url, data, chunked=True)
    assert status == 411 and err["code"] == 411
    status, _, err = put(server, url, b"\x1f\x8b", headers={"Content-Length": str((1 << 30) + 1)})
    assert status == 413 and err["code"] == 413
    files = os.path.join(server.state_dir, "cache", "files")
    assert [f for f in os.listdir(files)] == []  # nothing left by the failures

    status, hdrs, body = put(server, url, data)
    assert status == 200 and body is None and hdrs.get("content-length") == "0"
    status, _, body = call(server, "GET", f"/templates/{tid}/files/{HASH_A}")
    assert status == 201 and body == {"present": True}
    assert os.listdir(files) == [f"{HASH_A}.tar.gz"]
    st = os.stat(os.path.join(files, f"{HASH_A}.tar.gz"))
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == len(data)
    assert stat.S_IMODE(os.stat(files).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(files)).st_mode) == 0o700
    with open(os.path.join(files, f"{HASH_A}.tar.gz"), "rb") as f:
        assert f.read() == data


def test_upload_is_streamed_past_the_body_limit(server):
    tid = request_build(server, "e2e-big")["templateID"]
    h = "c" * 64
    url = upload_url(server, tid, h)
    data = gzip.compress(os.urandom(3 << 20))  # incompressible: > 1 MiB, the buffered body limit
    assert len(data) > (1 << 20)
    status, _, body = put(server, url, data)
    assert status == 200, body
    assert os.path.getsize(os.path.join(server.state_dir, "cache", "files", f"{h}.tar.gz")) == len(data)


def start(server, tid, bid, spec):
    return call(server, "POST", f"/v2/templates/{tid}/builds/{bid}", body=spec)


@pytest.mark.parametrize("spec, needle", [
    ({}, "exactly one of fromImage and fromTemplate"),
    ({"fromImage": "debian:bookworm", "fromTemplate": "base"}, "exactly one"),
    ({"fromImage": ""}, "fromImage"),
    ({"fromTemplate": 3}, "fromTemplate"),
    ({"fromTemplate": "nope-nothing"}, "fromTemplate"),
    ({"fromTemplate": "base", "steps": {}}, "steps"),
    ({"fromTemplate": "base", "steps": [{"type": "FROM", "args": []}]}, "steps[0]"),
    ({"fromTemplate": "base", "steps": ["RUN ls"]}, "steps[0]"),
    ({"fromTemplate": "base", "steps": [{"type": "RUN", "args": "ls"}]}, "args"),
    ({"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["ls"]}, {"type": "RUN", "args": [1]}]},
     "steps[1]"),
    ({"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["ls"], "force": "yes"}]}, "force"),
    ({"fromTemplate": "base", "steps": [{"type": "COPY", "args": ["a", "/a"]}]}, "steps[0] (COPY)"),
    ({"fromTemplate": "base", "steps": [{"type": "COPY", "args": ["a", "/a"], "filesHash": "xyz"}]},
     "filesHash"),
    ({"fromTemplate": "base", "steps": [{"type": "COPY", "args": ["a", "/a"], "filesHash": "d" * 64}]},
     "never uploaded"),
    ({"fromTemplate": "base", "steps": [{"type": "RUN", "args": ["true"]}] * 257}, "256"),
    ({"fromTemplate": "base", "startCmd": ["x"]}, "startCmd"),
])
def test_build_start_rejects_bad_specs(server, spec, needle):
    b = request_build(server, "e2e-start-bad")
    status, _, err = start(server, b["templateID"], b["buildID"], spec)
    assert status == 400 and err["code"] == 400, err
    assert needle in err["message"], err
    # A refused start leaves the build waiting.
    status, _, st = call(server, "GET", f"/templates/{b['templateID']}/builds/{b['buildID']}/status")
    assert st["status"] == "waiting"


def test_build_start_unknown_and_twice(server):
    b = request_build(server, "e2e-start")
    status, _, err = start(server, "nope-nothing", b["buildID"], {"fromTemplate": "base"})
    assert status == 404 and err["code"] == 404
    status, _, err = start(server, b["templateID"], "00000000-0000-4000-8000-000000000000", {"fromTemplate": "base"})
    assert status == 404
    other = request_build(server, "e2e-start-other")
    status, _, err = start(server, b["templateID"], other["buildID"], {"fromTemplate": "base"})
    assert status == 404  # a build of another template

    # Unknown keys (the SDK's forceUpload, resolveSymlinks, gzip) are ignored.
    spec = {"fromTemplate": "base", "force": False, "steps": [
        {"type": "ENV", "args": ["A", "1"], "force": False, "forceUpload": True, "gzip": True},
        {"type": "WORKDIR", "args": ["/tmp"]}, {"type": "USER", "args": ["user"]}], "readyCmd": "true"}
    status, hdrs, body = start(server, b["templateID"], b["buildID"], spec)
    if status == 501:
        pytest.skip("this build of hutch has no template builder yet")
    assert status == 202 and body is None and hdrs.get("content-length") == "0", body
    status, _, err = start(server, b["templateID"], b["buildID"], spec)
    assert status == 409 and err["code"] == 409


def write_db(state_dir, statements):
    """Writes into a stopped server's store: build logs and build outcomes come from the builder,
    which these tests do not wait for. (With the server running, another process's writes would
    race the server's own connections, see the report on store_open.)"""
    c = sqlite3.connect(os.path.join(state_dir, "hutch.db"), timeout=10)
    with c:
        for sql, args in statements:
            c.execute(sql, args)
    c.close()


def test_build_status_and_log_paging(bindir, tmp_path, free_port):
    server = HutchServer(bindir, tmp_path / "state", free_port).start()
    server.key = server.create_key()
    b = request_build(server, "e2e-status")
    tid, bid = b["templateID"], b["buildID"]
    path = f"/templates/{tid}/builds/{bid}/status"
    status, _, st = call(server, "GET", path)
    assert status == 200
    assert st == {"templateID": tid, "buildID": bid, "status": "waiting", "logs": [], "logEntries": []}
    status, _, st = call(server, "GET", f"/templates/e2e-status/builds/{bid}/status")
    assert status == 200 and st["templateID"] == tid
    for bad in ("nope-nothing", tid):
        status, _, err = call(server, "GET", f"/templates/{bad}/builds/{'0' * 8}-0000-4000-8000-{'0' * 12}/status")
        assert status == 404 and err["code"] == 404
    for q in ("logsOffset=-1", "logsOffset=x", "limit=101", "level=loud"):
        status, _, err = call(server, "GET", f"{path}?{q}")
        assert status == 400 and err["code"] == 400, q
    assert server.stop() == 0, server.log()

    # 150 entries, every 50th an error, every other one with a step; 2025-11-26T00:00:00.123Z on.
    write_db(server.state_dir, [
        ("INSERT INTO build_logs (build_id, seq, at, level, message, step) VALUES (?, ?, ?, ?, ?, ?)",
         (bid, i, 1764115200123 + i, "error" if i % 50 == 49 else "info", f"line {i}",
          str(i // 10) if i % 2 else None)) for i in range(150)])
    server.start()
    try:
        status, _, st = call(server, "GET", path)
        assert len(st["logEntries"]) == 100 and len(st["logs"]) == 100  # at most 100 per call
        e0, e1 = st["logEntries"][0], st["logEntries"][1]
        assert e0 == {"timestamp": "2025-11-26T00:00:00.123Z", "level": "info", "message": "line 0"}
        assert e1["step"] == "0" and e1["timestamp"] == "2025-11-26T00:00:00.124Z"
        assert st["logs"][0] == "line 0"
        # The SDK's loop: advance by what came back until an empty page.
        offset, seen = 0, []
        while True:
            status, _, st = call(server, "GET", f"{path}?logsOffset={offset}")
            if not st["logEntries"]:
                break
            seen += [e["message"] for e in st["logEntries"]]
            offset += len(st["logEntries"])
        assert seen == [f"line {i}" for i in range(150)]
        status, _, st = call(server, "GET", f"{path}?logsOffset=140&limit=5")
        assert [e["message"] for e in st["logEntries"]] == [f"line {i}" for i in range(140, 145)]
        status, _, st = call(server, "GET", f"{path}?level=error")
        assert [e["message"] for e in st["logEntries"]] == ["line 49", "line 99", "line 149"]
        status, _, st = call(server, "GET", f"{path}?level=error&logsOffset=2")
        assert [e["message"] for e in st["logEntries"]] == ["line 149"]
    finally:
        assert server.stop() == 0, server.log()

    write_db(server.state_dir, [("UPDATE builds SET status = 'error', reason = 'exit status 2', reason_step = '3', "
                                 "finished_at = 1764115300000 WHERE id = ?", (bid,))])
    server.start()
    try:
        status, _, st = call(server, "GET", f"{path}?logsOffset=150")
        assert st["status"] == "error" and st["reason"] == {"message": "exit status 2", "step": "3"}
        assert st["logEntries"] == []
        status, _, t = call(server, "GET", f"/templates/{tid}")
        assert t["builds"][0]["status"] == "error" and t["builds"][0]["finishedAt"] == "2025-11-26T00:01:40.000Z"
        status, _, items = call(server, "GET", "/templates")
        assert [x["buildStatus"] for x in items if x["templateID"] == tid] == ["error"]
    finally:
        assert server.stop() == 0, server.log()


def test_aliases(server):
    status, _, body = call(server, "GET", "/templates/aliases/base")
    assert status == 200 and body == {"templateID": "base", "public": False}
    b = request_build(server, "e2e-alias")
    status, _, body = call(server, "GET", "/templates/aliases/e2e-alias")
    assert status == 200 and body == {"templateID": b["templateID"], "public": False}
    status, _, err = call(server, "GET", "/templates/aliases/e2e-nothing-here")
    assert status == 404 and err["code"] == 404
    status, _, err = call(server, "GET", "/templates/aliases/Bad!")
    assert status == 400 and err["code"] == 400


def tags_of(server, ref):
    status, _, tags = call(server, "GET", f"/templates/{ref}/tags")
    assert status == 200, tags
    return {t["tag"]: t for t in tags}


def test_tags(server):
    b = request_build(server, "e2e-tags:v1")
    tid, bid = b["templateID"], b["buildID"]
    tags = tags_of(server, tid)
    assert set(tags) == {"v1"} and tags["v1"]["buildID"] == bid and RFC3339_MS.match(tags["v1"]["createdAt"])

    status, _, body = call(server, "POST", "/templates/tags", body={"target": "e2e-tags:v1", "tags": ["prod", "stage"]})
    assert status == 201 and body == {"buildID": bid, "tags": ["prod", "stage"]}
    assert set(tags_of(server, "e2e-tags")) == {"v1", "prod", "stage"}  # by name, too
    # A second build: tags move only when told.
    b2 = request_build(server, "e2e-tags:v2")
    status, _, body = call(server, "POST", "/templates/tags", body={"target": "e2e-tags:v2", "tags": ["prod"]})
    assert status == 201 and body["buildID"] == b2["buildID"]
    tags = tags_of(server, tid)
    assert tags["prod"]["buildID"] == b2["buildID"] and tags["stage"]["buildID"] == bid

    status, _, body = call(server, "DELETE", "/templates/tags", body={"name": "e2e-tags", "tags": ["prod", "stage"]})
    assert status == 204 and body is None
    assert set(tags_of(server, tid)) == {"v1", "v2"}
    status, _, err = call(server, "DELETE", "/templates/tags", body={"name": "e2e-tags", "tags": ["v1", "prod"]})
    assert status == 404 and err["code"] == 404
    assert set(tags_of(server, tid)) == {"v1", "v2"}  # all or nothing

    # No ready build yet, so no default tag to copy.
    status, _, err = call(server, "POST", "/templates/tags", body={"target": "e2e-tags", "tags": ["x"]})
    assert status == 404
    status, _, err = call(server, "POST", "/templates/tags", body={"target": "e2e-nothing:v1", "tags": ["x"]})
    assert status == 404
    for body in ({"target": "e2e-tags:v1"}, {"target": "e2e-tags:v1", "tags": []},
                 {"target": "e2e-tags:v1", "tags": ["bad tag"]}, {"tags": ["x"]}):
        status, _, err = call(server, "POST", "/templates/tags", body=body)
        assert status == 400 and err["code"] == 400, body
    status, _, err = call(server, "DELETE", "/templates/tags", body={"name": "e2e-tags"})
    assert status == 400
    status, _, err = call(server, "GET", "/templates/e2e-nothing/tags")
    assert status == 404


def test_list_pages(server):
    for i in range(3):
        request_build(server, f"e2e-page-{i}")
    status, _, everything = call(server, "GET", "/templates")
    ids = [t["templateID"] for t in everything]
    got, token = [], None
    while True:
        q = "?limit=2" + (f"&nextToken={urllib.parse.quote(token)}" if token else "")
        status, hdrs, page = call(server, "GET", "/v2/templates" + q)
        assert status == 200 and len(page) <= 2
        got += [t["templateID"] for t in page]
        token = hdrs.get("x-next-token")
        if not token:
            break
    assert got == ids
    for q in ("limit=0", "limit=101", "nextToken=garbage"):
        status, _, err = call(server, "GET", "/v2/templates?" + q)
        assert status == 400, q


def test_publish(server):
    b = request_build(server, "e2e-pub")
    status, _, body = call(server, "PATCH", f"/v2/templates/{b['templateID']}", body={"public": True})
    assert status == 200 and body == {"names": ["e2e-pub"]}
    status, _, body = call(server, "GET", "/templates/aliases/e2e-pub")
    assert body["public"] is True
    status, _, body = call(server, "PATCH", "/v2/templates/e2e-pub", body={"public": False})
    assert status == 200
    status, _, body = call(server, "GET", f"/templates/{b['templateID']}")
    assert body["public"] is False
    status, _, err = call(server, "PATCH", f"/v2/templates/{b['templateID']}", body={"public": "yes"})
    assert status == 400
    status, _, err = call(server, "PATCH", "/v2/templates/e2e-nothing", body={"public": True})
    assert status == 404


def test_delete(server):
    b = request_build(server, "e2e-del:v1")
    url = upload_url(server, b["templateID"], "e" * 64)
    status, _, body = call(server, "DELETE", f"/templates/{b['templateID']}")
    assert status == 204 and body is None
    status, _, err = call(server, "DELETE", f"/templates/{b['templateID']}")
    assert status == 404 and err["code"] == 404  # the SDK's deleteSnapshot then returns false
    for path in ("/templates/aliases/e2e-del", f"/templates/{b['templateID']}",
                 f"/templates/{b['templateID']}/builds/{b['buildID']}/status"):
        status, _, _ = call(server, "GET", path)
        assert status == 404, path
    # The name is free again.
    b2 = request_build(server, "e2e-del")
    assert b2["templateID"] != b["templateID"]
    # By name (and tag), as deleteSnapshot may name a snapshot.
    status, _, _ = call(server, "DELETE", "/templates/e2e-del:default")
    assert status == 204
    status, _, err = call(server, "DELETE", "/templates/base")
    assert status == 403 and err["code"] == 403
    status, _, items = call(server, "GET", "/templates")
    assert "base" in [t["templateID"] for t in items]
    assert url  # an upload URL of a deleted template names no template any more


def test_snapshots_list_is_empty_without_snapshots(server):
    request_build(server, "e2e-not-a-snapshot")
    for q in ("", "?limit=10", "?sandboxID=nope", "?name=e2e-not-a-snapshot", "?name=nothing:v1"):
        status, hdrs, body = call(server, "GET", "/snapshots" + q)
        assert status == 200 and body == [], q
        assert "x-next-token" not in hdrs
    for q in ("?limit=0", "?limit=101", "?nextToken=garbage"):
        status, _, err = call(server, "GET", "/snapshots" + q)
        assert status == 400 and err["code"] == 400, q


def test_upload_leftovers_go_at_start(bindir, tmp_path, free_port):
    server = HutchServer(bindir, tmp_path / "state", free_port)
    files = os.path.join(server.state_dir, "cache", "files")
    os.makedirs(files, mode=0o700)
    for name in (f".{HASH_A}.tmp-0123456789abcdef", f"{HASH_B}.tar.gz"):
        with open(os.path.join(files, name), "wb") as f:
            f.write(b"\x1f\x8b")
    server.start()
    try:
        assert os.listdir(files) == [f"{HASH_B}.tar.gz"]  # a crash's half upload goes, a whole one stays
    finally:
        assert server.stop() == 0, server.log()
