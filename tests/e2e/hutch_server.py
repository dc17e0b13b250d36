"""Starts a real `hutch serve` on a free loopback port with its own state directory."""
import http.client
import json
import os
import signal
import subprocess
import time


class HutchServer:
    def __init__(self, bindir, state_dir, port):
        self.bindir = bindir
        self.state_dir = str(state_dir)
        self.port = port
        self.log_path = os.path.join(self.state_dir + ".log")
        self.proc = None
        self.extra_args = []

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.bindir / "hutch"), "serve", "--listen", f"127.0.0.1:{self.port}",
             "--state-dir", self.state_dir, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hutch serve exited with {self.proc.returncode}: {self.log()}")
            try:
                status, _, _ = self.request("GET", "/health")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("hutch serve did not answer /health in 10 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def create_key(self):
        p = subprocess.run([str(self.bindir / "hutch"), "key", "create", "--state-dir", self.state_dir],
                           capture_output=True, text=True, timeout=30, check=True)
        return p.stdout.strip()

    def request(self, method, path, body=None, headers=None, conn=None):
        """One request; returns (status, headers dict lowercased, body bytes)."""
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                c.close()


def instance_leftovers(state_dir):
    """What a stopped `hutch serve` for state_dir left on the host: its cgroup parents
    (hutch-<sha256(realpath)[:12]> in any hierarchy) and its run dir (/run/hutch/<same>)."""
    import glob
    import hashlib
    tag = hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:12]
    return sorted(glob.glob(f"/sys/fs/cgroup/*/hutch-{tag}") + glob.glob(f"/sys/fs/cgroup/hutch-{tag}") +
                  glob.glob(f"/sys/fs/cgroup/unified/hutch-{tag}") + glob.glob(f"/run/hutch/{tag}"))
