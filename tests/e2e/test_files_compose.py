"""POST /files/compose on a real envd: parts concatenated in order into the destination, the
parts deleted, all with the requesting user's permissions."""
import json
import os
import tempfile
from urllib.parse import quote

import pytest

from envd_util import Envd


@pytest.fixture
def envd():
    e = Envd()
    yield e
    log = e.log_text()
    assert e.stop() == 0, log
    assert "AddressSanitizer" not in log and "runtime error" not in log, log


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        yield d


def compose(envd, body, headers=None):
    status, _, data = envd.request("POST", "/files/compose", body=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(data) if data else None


def put(envd, path, data):
    status, _, _ = envd.request("POST", f"/files?path={quote(path)}", body=data,
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 200


def test_parts_are_joined_in_order_and_removed(envd, workdir):
    parts = [os.path.join(workdir, f"part{i}") for i in range(3)]
    for i, p in enumerate(parts):
        put(envd, p, bytes([65 + i]) * (100_000 + i))
    dest = os.path.join(workdir, "sub", "dir", "whole.bin")
    status, body = compose(envd, {"source_paths": parts, "destination": dest})
    assert status == 200, body
    assert body == {"path": dest, "name": "whole.bin", "type": "file"}
    with open(dest, "rb") as f:
        data = f.read()
    assert data == b"A" * 100_000 + b"B" * 100_001 + b"C" * 100_002
    assert not any(os.path.exists(p) for p in parts)
    assert not [n for n in os.listdir(os.path.dirname(dest)) if ".e2b-compose." in n]


def test_an_existing_destination_is_replaced_only_when_complete(envd, workdir):
    dest = os.path.join(workdir, "keep.txt")
    put(envd, dest, b"old")
    part = os.path.join(workdir, "p")
    put(envd, part, b"new")
    status, body = compose(envd, {"source_paths": [part, os.path.join(workdir, "missing")], "destination": dest})
    assert status == 404 and "missing" in body["message"]
    assert open(dest, "rb").read() == b"old" and os.path.exists(part)
    status, body = compose(envd, {"source_paths": [part], "destination": dest})
    assert status == 200 and open(dest, "rb").read() == b"new"


@pytest.mark.parametrize("body, status", [
    ({"destination": "/tmp/x"}, 400),
    ({"source_paths": [], "destination": "/tmp/x"}, 400),
    ({"source_paths": ["/tmp"], "destination": "/tmp/x"}, 400),
    ({"source_paths": [5], "destination": "/tmp/x"}, 400),
    ({"source_paths": ["/tmp/a"]}, 400),
    ({"source_paths": ["/tmp/a"], "destination": "/tmp/a"}, 400),
    ({"source_paths": ["/etc/hostname"], "destination": "/tmp/x", "username": "nosuchuser"}, 401),
])
def test_bad_requests(envd, body, status):
    got, err = compose(envd, body)
    assert got == status, err
    assert err["code"] == status


def test_runs_with_the_users_permissions(envd, workdir):
    secret = os.path.join(workdir, "secret")
    with open(secret, "wb") as f:
        f.write(b"root only")
    os.chmod(secret, 0o600)
    status, body = compose(envd, {"source_paths": [secret], "destination": os.path.join(workdir, "leak"),
                                  "username": "nobody"})
    assert status == 403, body
    assert os.path.exists(secret) and not os.path.exists(os.path.join(workdir, "leak"))


def test_malformed_body(envd):
    status, _, data = envd.request("POST", "/files/compose", body=b"{not json",
                                   headers={"Content-Type": "application/json"})
    assert status == 400
