"""envd's /files endpoints and filesystem RPCs over raw HTTP: ranges, conditional requests,
gzip both ways, malformed and oversized multipart bodies, paths that traverse or meet planted
symlinks, signatures, metadata, ENOSPC, the polling watchers and WatchDir keepalives. After
every test envd must still be healthy."""
import base64
import gzip
import hashlib
import http.client
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from envd_util import Envd, envelope, read_envelope

TOKEN = "e2e-files-token"
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture(scope="module")
def envd():
    e = Envd()
    yield e
    code = e.proc.poll()
    log = e.log_text()
    e.stop()
    assert code is None, f"envd exited with {code}: {log}"
    assert "runtime error" not in log and "Sanitizer" not in log, log


@pytest.fixture(scope="module")
def envd_token():
    e = Envd("--access-token", TOKEN)
    yield e
    log = e.log_text()
    e.stop()
    assert "runtime error" not in log and "Sanitizer" not in log, log


@pytest.fixture(autouse=True)
def stays_healthy(request):
    yield
    for name in ("envd", "envd_token"):
        if name in request.fixturenames:
            assert request.getfixturevalue(name).healthy(), f"{name} is not healthy after the test"


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="hutch-files-e2e-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def q(**params) -> str:
    return urllib.parse.urlencode(params)


def leftovers(d: Path):
    return [p for p in d.rglob(".hutch-upload-*")]


def multipart(parts, boundary="hutchboundary"):
    """parts: [(field, filename or None, bytes)]"""
    out = b""
    for field, filename, data in parts:
        disp = f'form-data; name="{field}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(envd, path=None, parts=None, headers=None, **query):
    if path is not None:
        query["path"] = path
    body, h = multipart(parts)
    h.update(headers or {})
    return envd.request("POST", "/files?" + q(**query), body, h)


def error_of(data: bytes) -> dict:
    obj = json.loads(data)
    assert set(obj) == {"code", "message"}, obj
    return obj


# ---- downloads ----


def test_range_requests(envd, tmp):
    f = tmp / "r.bin"
    data = bytes(range(256)) * 4
    f.write_bytes(data)
    path = "/files?" + q(path=str(f))
    status, h, body = envd.get(path, {"Range": "bytes=10-19"})
    assert status == 206
    assert body == data[10:20]
    assert h["Content-Range"] == f"bytes 10-19/{len(data)}"
    status, h, body = envd.get(path, {"Range": "bytes=-5"})
    assert status == 206 and body == data[-5:]
    status, h, body = envd.get(path, {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    # If-Range that does not match the current ETag: the whole file.
    status, h, body = envd.get(path, {"Range": "bytes=0-0", "If-Range": '"stale"'})
    assert status == 200 and body == data
    status, h, _ = envd.get(path)
    status, _, body = envd.get(path, {"Range": "bytes=0-0", "If-Range": h["ETag"]})
    assert status == 206 and body == data[:1]


def test_unsatisfiable_range_is_416(envd, tmp):
    f = tmp / "r.bin"
    f.write_bytes(b"x" * 100)
    status, h, _ = envd.get("/files?" + q(path=str(f)), {"Range": "bytes=100-200"})
    assert status == 416
    assert h["Content-Range"] == "bytes */100"
    status, _, _ = envd.get("/files?" + q(path=str(f)), {"Range": "bytes=9-3"})
    assert status == 416


def test_conditional_requests(envd, tmp):
    f = tmp / "c.txt"
    f.write_text("conditional")
    path = "/files?" + q(path=str(f))
    status, h, _ = envd.get(path)
    assert status == 200 and h["ETag"] and h["Last-Modified"]
    status, _, body = envd.get(path, {"If-None-Match": h["ETag"]})
    assert status == 304 and body == b""
    status, _, _ = envd.get(path, {"If-Modified-Since": h["Last-Modified"]})
    assert status == 304
    status, _, body = envd.get(path, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert status == 200 and body == b"conditional"
    status, _, _ = envd.get(path, {"If-None-Match": '"other"'})
    assert status == 200
    status, _, body = envd.get(path, {"If-Match": h["ETag"]})
    assert status == 200 and body == b"conditional"
    status, _, _ = envd.get(path, {"If-Match": '"other"'})
    assert status == 412
    status, _, _ = envd.get(path, {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert status == 412
    status, _, _ = envd.get(path, {"If-Unmodified-Since": h["Last-Modified"]})
    assert status == 200


def test_gzip_download(envd, tmp):
    f = tmp / "g.txt"
    data = b"gzip me please " * 50000
    f.write_bytes(data)
    path = "/files?" + q(path=str(f))
    status, h, body = envd.get(path, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert h["Content-Encoding"] == "gzip"
    assert h["Vary"] == "Accept-Encoding"
    assert len(body) < len(data) // 10
    assert gzip.decompress(body) == data
    status, h, body = envd.get(path, {"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in h and body == data
    status, _, body = envd.get(path, {"Accept-Encoding": "br, identity;q=0"})
    assert status == 406, body
    # A range is served unencoded.
    status, h, body = envd.get(path, {"Accept-Encoding": "gzip", "Range": "bytes=0-3"})
    assert status == 206 and "Content-Encoding" not in h and body == data[:4]


def test_download_headers(envd, tmp):
    f = tmp / 'we"ird name.json'
    f.write_text("{}")
    status, h, body = envd.get("/files?" + q(path=str(f)), {"Accept-Encoding": "identity"})
    assert status == 200 and body == b"{}"
    assert h["Content-Type"] == "application/json"
    assert h["Content-Disposition"] == 'inline; filename="we\\"ird name.json"'
    u = tmp / "\u20ac.bin"
    u.write_bytes(b"\x00\x01")
    status, h, _ = envd.get("/files?" + q(path=str(u)))
    assert h["Content-Disposition"] == "inline; filename*=utf-8''%E2%82%AC.bin"
    e = tmp / "empty"
    e.write_bytes(b"")
    status, h, body = envd.get("/files?" + q(path=str(e)), {"Accept-Encoding": "gzip"})
    assert status == 200 and h["Content-Length"] == "0" and body == b""


def test_download_errors(envd, tmp):
    missing = tmp / "missing.txt"
    status, h, body = envd.get("/files?" + q(path=str(missing)))
    assert status == 404
    assert h["Content-Type"].startswith("application/json")
    assert error_of(body) == {"code": 404, "message": f"path '{missing}' does not exist"}
    status, _, body = envd.get("/files?" + q(path=str(tmp)))
    assert status == 400 and "is a directory" in error_of(body)["message"]
    status, _, body = envd.get("/files?" + q(path=str(tmp), username="no-such-user-hutch"))
    assert status == 401
    status, _, body = envd.get("/files?" + q(path="~other/x"))
    assert status == 400
    status, _, _ = envd.get("/files?" + q(path="/dev/null"))
    assert status == 400
    # A NUL must not cut the path short, and paths must be UTF-8.
    (tmp / "short").write_text("s")
    status, _, body = envd.get(f"/files?path={urllib.parse.quote(str(tmp / 'short'))}%00.txt")
    assert status == 400 and "NUL" in error_of(body)["message"]
    status, _, body = envd.get(f"/files?path={urllib.parse.quote(str(tmp))}/%ff%fe")
    assert status == 400, body
    status, _, body = envd.request("POST", f"/files?path={urllib.parse.quote(str(tmp / 'short'))}%00x", b"x",
                                   {"Content-Type": "application/octet-stream"})
    assert status == 400 and (tmp / "short").read_text() == "s"
    status, _, _ = envd.request("DELETE", "/files?" + q(path=str(missing)))
    assert status == 405


def test_user_cannot_read_what_the_user_cannot_read(envd, tmp):
    secret = tmp / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    status, _, body = envd.get("/files?" + q(path=str(secret), username="nobody"))
    assert status == 403, body
    status, _, body = envd.get("/files?" + q(path=str(secret), username="root"))
    assert status == 200 and body == b"root only"


# ---- uploads ----


def test_multipart_and_raw_uploads(envd, tmp):
    status, _, body = upload(envd, parts=[("file", str(tmp / "m" / "1.txt"), b"one"), ("file", str(tmp / "m" / "2.txt"), b"two"),
                                         ("other", None, b"ignored")])
    assert status == 200, body
    assert json.loads(body) == [
        {"path": str(tmp / "m" / "1.txt"), "name": "1.txt", "type": "file"},
        {"path": str(tmp / "m" / "2.txt"), "name": "2.txt", "type": "file"},
    ]
    assert (tmp / "m" / "2.txt").read_bytes() == b"two"
    status, _, body = envd.request("POST", "/files?" + q(path=str(tmp / "raw.bin")), b"\x00raw\xff",
                                   {"Content-Type": "application/octet-stream"})
    assert status == 200, body
    assert (tmp / "raw.bin").read_bytes() == b"\x00raw\xff"
    # An empty part is an empty file.
    status, _, body = upload(envd, parts=[("file", str(tmp / "e.txt"), b"")])
    assert status == 200 and (tmp / "e.txt").read_bytes() == b""
    assert leftovers(tmp) == []


def test_cut_upload_leaves_nothing(envd, tmp):
    """Half a body, then the client goes away: no file, no temporary file, old content kept."""
    target = tmp / "cut.bin"
    (tmp / "old.bin").write_bytes(b"old")
    for name in ("cut.bin", "old.bin"):
        c = envd.conn(timeout=10)
        c.putrequest("POST", "/files?" + q(path=str(tmp / name)))
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(1 << 20))
        c.endheaders()
        c.send(b"x" * (300 << 10))
        # The part sent so far is not visible under any name while the upload runs.
        status, body = envd.unary("/filesystem.Filesystem/Stat", {"path": str(tmp / name)})
        assert status == (404 if name == "cut.bin" else 200), body
        assert sorted(p.name for p in tmp.iterdir()) == ["old.bin"]
        c.close()
    # envd notices the close; a later request on another connection is served normally.
    assert envd.healthy()
    assert not target.exists()
    assert (tmp / "old.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp.iterdir()) == ["old.bin"]


def test_gzip_upload(envd, tmp):
    data = os.urandom(1 << 16) + b"a" * (1 << 20)
    status, _, body = envd.request("POST", "/files?" + q(path=str(tmp / "gz.bin")), gzip.compress(data),
                                   {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
    assert status == 200, body
    assert (tmp / "gz.bin").read_bytes() == data
    # Two gzip members are one stream.
    status, _, body = envd.request("POST", "/files?" + q(path=str(tmp / "gz2.bin")),
                                   gzip.compress(b"ab") + gzip.compress(b"cd"),
                                   {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
    assert status == 200 and (tmp / "gz2.bin").read_bytes() == b"abcd"


def test_bad_gzip_leaves_the_target_alone(envd, tmp):
    target = tmp / "keep.txt"
    target.write_text("original")
    h = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    for bad in (b"not gzip at all", gzip.compress(b"x" * 100000)[:-20], b""):
        status, _, body = envd.request("POST", "/files?" + q(path=str(target)), bad, h)
        assert status == 400, body
        assert target.read_text() == "original"
    status, _, body = envd.request("POST", "/files?" + q(path=str(target)), b"x",
                                   {"Content-Type": "application/octet-stream", "Content-Encoding": "br"})
    assert status == 400
    assert target.read_text() == "original"
    assert leftovers(tmp) == []


def test_malformed_multipart(envd, tmp):
    h = {"Content-Type": "multipart/form-data; boundary=bnd"}
    ok, _ = multipart([("file", str(tmp / "ok.txt"), b"fine")], boundary="bnd")
    status, _, body = envd.request("POST", "/files", ok, h)
    assert status == 200, body  # the same framing, well formed, is accepted
    # No boundary at all.
    status, _, body = envd.request("POST", "/files?" + q(path=str(tmp / "x")), b"garbage without boundaries", h)
    assert status == 400, body
    # A part cut off before its closing boundary: nothing is written.
    trunc = b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="' + str(tmp / "t.txt").encode() + b'"\r\n\r\npartial data'
    status, _, body = envd.request("POST", "/files", trunc, h)
    assert status == 400, body
    assert not (tmp / "t.txt").exists()
    # Data after the closing boundary.
    status, _, body = envd.request("POST", "/files", ok + b"trailing", h)
    assert status == 400, body
    # No boundary parameter, other content types.
    status, _, body = envd.request("POST", "/files", ok, {"Content-Type": "multipart/form-data"})
    assert status == 400 and "Content-Type" in error_of(body)["message"]
    status, _, body = envd.request("POST", "/files", b"x", {"Content-Type": "text/plain"})
    assert status == 400 and "unsupported content type" in error_of(body)["message"]
    status, _, body = envd.request("POST", "/files", b"file=x", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "unsupported content type" in error_of(body)["message"]
    # A part header longer than the parser's buffer.
    huge = b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="' + b"a" * 100000 + b'"\r\n\r\nx\r\n--bnd--\r\n'
    status, _, body = envd.request("POST", "/files", huge, h)
    assert status == 400, body
    # Only the closing boundary: no file.
    status, _, body = envd.request("POST", "/files", b"--bnd--\r\n", h)
    assert status == 400 and "no file part" in error_of(body)["message"]
    assert leftovers(tmp) == []
    assert (tmp / "ok.txt").read_bytes() == b"fine"


def test_multipart_path_rules(envd, tmp):
    # No filename and no path query.
    status, _, body = upload(envd, parts=[("file", None, b"x")])
    assert status == 400, body
    # Two parts with the same path: 400; the first one was written.
    p = str(tmp / "dup.txt")
    status, _, body = upload(envd, parts=[("file", p, b"first"), ("file", p, b"second")])
    assert status == 400 and "multiple files to the same path" in error_of(body)["message"]
    assert (tmp / "dup.txt").read_bytes() == b"first"
    # The path query wins over the part's filename.
    status, _, body = upload(envd, path=str(tmp / "q.txt"), parts=[("file", str(tmp / "ignored.txt"), b"q")])
    assert status == 200 and (tmp / "q.txt").read_bytes() == b"q" and not (tmp / "ignored.txt").exists()
    # Uploading over a directory.
    (tmp / "d").mkdir()
    status, _, body = upload(envd, parts=[("file", str(tmp / "d"), b"x")])
    assert status == 400 and "directory" in error_of(body)["message"]
    # A parent that is a file.
    (tmp / "f").write_text("f")
    status, _, body = upload(envd, parts=[("file", str(tmp / "f" / "child"), b"x")])
    assert status == 400, body
    # Octet-stream needs the path query.
    status, _, body = envd.request("POST", "/files", b"x", {"Content-Type": "application/octet-stream"})
    assert status == 400 and "path query parameter is required" in error_of(body)["message"]
    assert leftovers(tmp) == []


def test_traversal_is_resolved_and_bounded_by_the_user(envd, tmp):
    status, _, body = upload(envd, parts=[("file", f"{tmp}/a/../b.txt", b"b")])
    assert status == 200 and json.loads(body)[0]["path"] == f"{tmp}/b.txt"
    assert (tmp / "b.txt").read_bytes() == b"b"
    # nobody's home is /nonexistent: a relative path climbs to /etc, where nobody may not write.
    status, _, body = upload(envd, parts=[("file", "../etc/hutch-e2e-should-not-exist", b"x")], username="nobody")
    assert status == 403, body
    assert not Path("/etc/hutch-e2e-should-not-exist").exists()
    assert not list(Path("/etc").glob(".hutch-upload-*"))


def test_planted_symlinks(envd, tmp):
    open_dir = tmp / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    # A dangling link is replaced, never created through.
    outside = tmp / "outside-target"
    (open_dir / "dangling").symlink_to(outside)
    status, _, body = upload(envd, parts=[("file", str(open_dir / "dangling"), b"d")], username="nobody")
    assert status == 200, body
    assert not outside.exists()
    assert not (open_dir / "dangling").is_symlink()
    assert (open_dir / "dangling").stat().st_uid == NOBODY.pw_uid
    # A link to a root-owned file: followed, and then refused by nobody's own permissions.
    rootfile = tmp / "rootfile"
    rootfile.write_text("root's")
    (open_dir / "pw").symlink_to(rootfile)
    status, _, body = upload(envd, parts=[("file", str(open_dir / "pw"), b"owned")], username="nobody")
    assert status == 403, body
    assert rootfile.read_text() == "root's"
    # A link to a file the user may replace is written through and stays a link.
    mine = tmp / "mine.txt"
    mine.write_text("old")
    (tmp / "link").symlink_to(mine)
    status, _, body = upload(envd, parts=[("file", str(tmp / "link"), b"new")])
    assert status == 200, body
    assert (tmp / "link").is_symlink() and mine.read_text() == "new"
    # A hard link is replaced, never written through: the other name keeps its content.
    victim = tmp / "victim"
    victim.write_text("untouched")
    os.link(victim, tmp / "hard")
    status, _, body = upload(envd, parts=[("file", str(tmp / "hard"), b"replaced")])
    assert status == 200, body
    assert victim.read_text() == "untouched" and (tmp / "hard").read_text() == "replaced"
    assert leftovers(tmp) == []


def test_metadata_headers(envd, tmp):
    p = tmp / "md.txt"
    status, _, body = envd.request("POST", "/files?" + q(path=str(p)), b"m",
                                   {"Content-Type": "application/octet-stream", "X-Metadata-Color": "blue"})
    assert status == 200, body
    assert json.loads(body)[0]["metadata"] == {"color": "blue"}
    status, _, body = envd.request("POST", "/files?" + q(path=str(p)), b"m2",
                                   {"Content-Type": "application/octet-stream", "X-Metadata-Color": "caf\u00e9"})
    assert status == 400 and "metadata" in error_of(body)["message"]
    assert p.read_bytes() == b"m"
    status, _, body = envd.request("POST", "/files?" + q(path=str(p)), b"m3",
                                   {"Content-Type": "application/octet-stream", "X-Metadata-K": "v" * 5000})
    assert status == 400


def test_signatures(envd_token, tmp):
    f = tmp / "s.txt"
    f.write_text("signed")
    p = str(f)

    def sig(op, user="", exp=None):
        raw = f"{p}:{op}:{user}:{TOKEN}" + (f":{exp}" if exp is not None else "")
        return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode().rstrip("=")

    status, _, body = envd_token.get("/files?" + q(path=p, signature=sig("read")))
    assert status == 200 and body == b"signed"
    future = int(time.time()) + 60
    status, _, _ = envd_token.get("/files?" + q(path=p, signature=sig("read", exp=future), signature_expiration=future))
    assert status == 200
    # Well in the past: envd's time(NULL) reads the coarse clock, which can trail Python's
    # time.time() across a second boundary (a past of one second flaked once in CI).
    past = int(time.time()) - 60
    status, _, body = envd_token.get("/files?" + q(path=p, signature=sig("read", exp=past), signature_expiration=past))
    assert status == 401 and "expired" in error_of(body)["message"]
    status, _, body = envd_token.get("/files?" + q(path=p, signature=sig("read") + "x"))
    assert status == 401
    status, _, body = envd_token.get("/files?" + q(path=p, signature=sig("read", exp=future), signature_expiration="soon"))
    assert status == 400
    status, _, _ = envd_token.get("/files?" + q(path=p), {"X-Access-Token": "wrong"})
    assert status == 401
    status, _, _ = envd_token.get("/files?" + q(path=p), {"X-Access-Token": TOKEN})
    assert status == 200
    # A refused upload gets its answer (not a reset) and writes nothing.
    status, _, body = upload(envd_token, path=p, parts=[("file", p, b"overwritten")], signature=sig("read"))
    assert status == 401, body
    assert f.read_text() == "signed"
    status, _, body = upload(envd_token, path=p, parts=[("file", p, b"overwritten")], signature=sig("write"))
    assert status == 200 and f.read_text() == "overwritten"
    # The RPCs need the header.
    status, body = envd_token.unary("/filesystem.Filesystem/Stat", {"path": p})
    assert status == 401


def test_enospc_is_507_and_leaves_nothing(envd, tmp):
    mnt = tmp / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {r.stderr.decode().strip()}")
    try:
        status, _, body = envd.request("POST", "/files?" + q(path=str(mnt / "big.bin")), os.urandom(2 << 20),
                                       {"Content-Type": "application/octet-stream"})
        assert status == 507, body
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ---- filesystem RPCs ----


def test_rpc_error_codes(envd, tmp):
    status, body = envd.unary("/filesystem.Filesystem/Stat", {"path": str(tmp / "none")})
    assert status == 404 and body["code"] == "not_found"
    (tmp / "loop1").symlink_to(tmp / "loop2")
    (tmp / "loop2").symlink_to(tmp / "loop1")
    status, body = envd.unary("/filesystem.Filesystem/ListDir", {"path": str(tmp / "loop1")})
    assert status == 400 and body["code"] == "failed_precondition", body
    (tmp / "file").write_text("f")
    status, body = envd.unary("/filesystem.Filesystem/MakeDir", {"path": str(tmp / "file")})
    assert status == 400 and body["code"] == "invalid_argument"
    status, body = envd.unary("/filesystem.Filesystem/MakeDir", {"path": str(tmp)})
    assert status == 409 and body["code"] == "already_exists"
    (tmp / "private").mkdir(mode=0o700)
    auth = {"Authorization": "Basic " + base64.b64encode(b"nobody:").decode()}
    status, body = envd.unary("/filesystem.Filesystem/ListDir", {"path": str(tmp / "private")}, auth)
    assert status == 403 and body["code"] == "permission_denied"
    status, body = envd.unary("/filesystem.Filesystem/Stat", {"path": 5})
    assert status == 400 and body["code"] == "invalid_argument"
    status, body = envd.unary("/filesystem.Filesystem/ListDir", {"path": str(tmp), "depth": -1})
    assert status == 400
    status, body = envd.unary("/filesystem.Filesystem/Remove", {"path": "/"})
    assert status == 400
    status, body = envd.unary("/filesystem.Filesystem/Move", {"source": str(tmp / "none"), "destination": str(tmp / "x")})
    assert status == 404


def test_polling_watchers(envd, tmp):
    status, body = envd.unary("/filesystem.Filesystem/CreateWatcher", {"path": str(tmp), "recursive": True, "includeEntry": True})
    assert status == 200, body
    wid = body["watcherId"]
    (tmp / "sub").mkdir()
    (tmp / "sub" / "f.txt").write_text("w")
    (tmp / "top.txt").write_text("t")
    # inotify queues events during the syscalls above, and GetWatcherEvents drains what is queued.
    status, body = envd.unary("/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid})
    assert status == 200, body
    names = {(e["name"], e["type"]) for e in body["events"]}
    assert ("sub", "EVENT_TYPE_CREATE") in names
    assert ("top.txt", "EVENT_TYPE_CREATE") in names
    assert ("top.txt", "EVENT_TYPE_WRITE") in names
    top = [e for e in body["events"] if e["name"] == "top.txt" and e["type"] == "EVENT_TYPE_WRITE"][0]
    assert top["entry"]["path"] == str(tmp / "top.txt")
    status, body = envd.unary("/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid})
    assert status == 200 and body.get("events", []) == []
    status, body = envd.unary("/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid})
    assert status == 200
    status, body = envd.unary("/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid})
    assert status == 404 and body["code"] == "not_found"
    status, body = envd.unary("/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid})
    assert status == 404


def test_watcher_limit(envd, tmp):
    ids = []
    try:
        for _ in range(200):
            status, body = envd.unary("/filesystem.Filesystem/CreateWatcher", {"path": str(tmp)})
            if status != 200:
                assert body["code"] == "resource_exhausted", body
                break
            ids.append(body["watcherId"])
        else:
            pytest.fail("no bound on the number of watchers")
    finally:
        for wid in ids:
            envd.unary("/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid})


def test_watch_dir_keepalive_and_deadline(envd, tmp):
    c = envd.conn(timeout=10)
    try:
        c.request("POST", "/filesystem.Filesystem/WatchDir", envelope({"path": str(tmp)}),
                  {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                   "Keepalive-Ping-Interval": "1", "Connect-Timeout-Ms": "2500"})
        r = c.getresponse()
        assert r.status == 200
        assert read_envelope(r) == (0, {"start": {}})
        (tmp / "w.txt").write_text("x")
        seen = []
        while True:
            flags, obj = read_envelope(r)
            seen.append(obj)
            if flags == 2:
                break
        assert {"filesystem": {"name": "w.txt", "type": "EVENT_TYPE_CREATE"}} in seen
        assert {"keepalive": {}} in seen
        assert seen[-1]["error"]["code"] == "deadline_exceeded"
    finally:
        c.close()


def test_large_upload_and_download_stream(envd, tmp):
    """256 MiB through envd: bounded memory on both sides (envd's RSS stays far below the size)."""
    size = 256 << 20
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()

    def body():
        for _ in range(size // len(block)):
            digest.update(block)
            yield block

    c = envd.conn(timeout=60)
    try:
        c.request("POST", "/files?" + q(path=str(tmp / "big.bin")), body(),
                  {"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
    finally:
        c.close()
    assert (tmp / "big.bin").stat().st_size == size
    rss_kb = int([l for l in Path(f"/proc/{envd.proc.pid}/status").read_text().splitlines() if l.startswith("VmHWM")][0].split()[1])
    c = envd.conn(timeout=60)
    try:
        c.request("GET", "/files?" + q(path=str(tmp / "big.bin")), headers={"Accept-Encoding": "identity"})
        r = c.getresponse()
        got = hashlib.sha256()
        n = 0
        while chunk := r.read(1 << 20):
            got.update(chunk)
            n += len(chunk)
        assert n == size and got.digest() == digest.digest()
    finally:
        c.close()
    # Peak RSS under ASan is inflated, but nowhere near the file's size.
    assert rss_kb < 200 * 1024, f"envd peak RSS {rss_kb} KiB after a 256 MiB upload"
