"""Helpers for envd tests: start a real envd on a free loopback port, and speak the Connect
protocol (JSON codec, 5-byte envelopes) over raw HTTP/1.1 with http.client."""
import base64
import ctypes
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def envd_path() -> Path:
    return (ROOT / os.environ.get("HUTCH_BUILD_DIR", "build")).resolve() / "bin" / "envd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # PR_SET_PDEATHSIG: an envd (and so its processes) never outlives a killed test run.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class Envd:
    def __init__(self, *args: str, prefix=()):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="envd-e2e-", suffix=".log", delete=False)
        exe = envd_path()
        if not exe.exists():
            raise RuntimeError(f"{exe} not built")
        self.proc = subprocess.Popen([*prefix, str(exe), "--listen", f"127.0.0.1:{self.port}", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
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
                raise RuntimeError("envd did not become healthy")
            time.sleep(0.02)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)
        return self.proc.returncode

    def conn(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def get(self, path: str, headers=None):
        return self.request("GET", path, headers=headers)

    def healthy(self) -> bool:
        return self.get("/health")[0] == 204 and self.proc.poll() is None

    def unary(self, method: str, msg, headers=None):
        """A unary Connect call; msg is a dict or raw bytes. Returns (status, parsed body)."""
        body = msg if isinstance(msg, (bytes, bytearray)) else json.dumps(msg).encode()
        h = {"Content-Type": "application/json", "Connect-Protocol-Version": "1", **(headers or {})}
        status, _, data = self.request("POST", method, body, h)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data

    def stream(self, method: str, body: bytes, headers=None, timeout: float = 10):
        """A server-stream call with a raw body. Returns (status, headers, [(flags, obj)])."""
        h = {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1", **(headers or {})}
        status, hdrs, data = self.request("POST", method, body, h, timeout)
        return status, hdrs, parse_envelopes(data)


def envelope(msg, flags: int = 0) -> bytes:
    payload = msg if isinstance(msg, (bytes, bytearray)) else json.dumps(msg).encode()
    return struct.pack(">BI", flags, len(payload)) + payload


def parse_envelopes(data: bytes):
    out = []
    while data:
        assert len(data) >= 5, f"truncated envelope header: {data!r}"
        flags, n = struct.unpack(">BI", data[:5])
        assert len(data) >= 5 + n, "truncated envelope payload"
        out.append((flags, json.loads(data[5:5 + n])))
        data = data[5 + n:]
    return out


def read_envelope(resp) -> tuple:
    """Reads one envelope from a streaming http.client response."""
    head = resp.read(5)
    assert len(head) == 5, f"stream ended early: {head!r}"
    flags, n = struct.unpack(">BI", head)
    payload = resp.read(n)
    assert len(payload) == n
    return flags, json.loads(payload)


def end_error(envelopes):
    """The error of the end-of-stream envelope, or None; asserts that it is last and present."""
    assert envelopes, "no envelopes"
    flags, obj = envelopes[-1]
    assert flags == 2, f"last envelope is not end-of-stream: {envelopes[-1]}"
    return obj.get("error")


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def start_request(command: str, **extra) -> dict:
    # /bin/sh, not the SDK's `bash -l`: these tests are about envd, and a login profile (pyenv
    # rehash and its lock file, ...) only adds time and shared state.
    return {"process": {"cmd": "/bin/sh", "args": ["-c", command]}, "stdin": False, **extra}
