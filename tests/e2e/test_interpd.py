"""interpd (src/interpd/) end to end: the real daemon on a free loopback port with a temporary
HOME and TMPDIR, real Jupyter kernels (Debian's ipykernel and IRkernel), driven over raw HTTP the
way @e2b/code-interpreter does (e2b-compat §4)."""
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_LIB = ROOT / "src" / "interpd" / "python"
HAVE_IR = Path("/usr/share/jupyter/kernels/ir/kernel.json").exists()


def interpd_path() -> Path:
    return (ROOT / os.environ.get("HUTCH_BUILD_DIR", "build")).resolve() / "bin" / "interpd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class Interpd:
    def __init__(self, *args, env=None, wait=True):
        self.port = free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="interpd-e2e-")
        self.home = Path(self.tmp.name) / "home"
        self.home.mkdir()
        self.tmpdir = Path(self.tmp.name) / "tmp"
        self.tmpdir.mkdir()
        self.log = Path(self.tmp.name) / "interpd.log"
        exe = interpd_path()
        if not exe.exists():
            raise RuntimeError(f"{exe} not built")
        e = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "E2B_LOCAL")}
        e.update(HOME=str(self.home), TMPDIR=str(self.tmpdir), HUTCH_LOG_LEVEL="debug")
        e.update(env or {})
        self.proc = subprocess.Popen([str(exe), "--listen", f"127.0.0.1:{self.port}", *args],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env=e,
                                     preexec_fn=_die_with_parent)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"interpd exited with {self.proc.returncode}: {self.log_text()}")
            try:
                if self.request("GET", "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("interpd did not become healthy: " + self.log_text())
            time.sleep(0.02)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kernel_pids(self):
        """Processes whose command line names this interpd's runtime directory (its kernels)."""
        pids = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if str(self.tmpdir).encode() in cmd:
                pids.append(int(p.name))
        return pids

    def stop(self):
        """Stops interpd with SIGTERM; returns its exit status (a sanitizer report makes it
        non-zero) after checking that its log has no sanitizer report."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log = self.log_text()
        self.tmp.cleanup()
        assert "Sanitizer" not in log and "runtime error:" not in log, log
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
            c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()
        finally:
            c.close()

    def json(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        assert status == 200, (status, data)
        return json.loads(data)

    def execute(self, code, timeout=60, headers=None, **kw):
        """Runs code; returns the list of NDJSON lines (status must be 200)."""
        status, ctype, data = self.request("POST", "/execute", {"code": code, **kw}, headers=headers,
                                           timeout=timeout)
        assert status == 200, (status, data)
        assert ctype.startswith("application/x-ndjson")
        assert data.endswith(b"\n")
        return [json.loads(line) for line in data.decode().splitlines()]


def of(lines, t):
    return [x for x in lines if x["type"] == t]


def main_text(lines):
    return [r.get("text") for r in of(lines, "result") if r["is_main_result"]]


@pytest.fixture(scope="module")
def srv():
    s = Interpd("--python-lib", str(PYTHON_LIB))
    yield s
    assert s.stop() == 0


def new_context(srv, **body):
    return srv.json("POST", "/contexts", body)


def test_health(srv):
    status, ctype, data = srv.request("GET", "/health")
    assert (status, json.loads(data)) == (200, "OK")


def test_execute_one_plus_one(srv):
    lines = srv.execute("1+1")
    assert lines[0]["type"] == "number_of_executions"
    assert isinstance(lines[0]["execution_count"], int)
    assert main_text(lines) == ["2"]
    assert lines[-1] == {"type": "end_of_execution"}
    assert of(lines, "error") == []


def test_stdout_stderr_in_order(srv):
    lines = srv.execute("import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\n"
                        "print('three', flush=True)")
    logs = [(x["type"], x["text"]) for x in lines if x["type"] in ("stdout", "stderr")]
    assert logs == [("stdout", "one\n"), ("stderr", "two\n"), ("stdout", "three\n")]
    assert all("timestamp" in x for x in lines if x["type"] in ("stdout", "stderr"))


def test_state_kept_between_calls(srv):
    srv.execute("kept_value = 41")
    assert main_text(srv.execute("kept_value + 1")) == ["42"]


def test_execution_count_increments(srv):
    a = of(srv.execute("1"), "number_of_executions")[0]["execution_count"]
    b = of(srv.execute("2"), "number_of_executions")[0]["execution_count"]
    assert b == a + 1


def test_error(srv):
    lines = srv.execute("1/0")
    (err,) = of(lines, "error")
    assert err["name"] == "ZeroDivisionError"
    assert err["value"] == "division by zero"
    assert isinstance(err["traceback"], str) and "ZeroDivisionError" in err["traceback"]
    assert "\n" in err["traceback"]
    assert lines[-1]["type"] == "end_of_execution"


def test_display_data_html(srv):
    lines = srv.execute("from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))")
    (r,) = of(lines, "result")
    assert r["is_main_result"] is False
    assert r["html"] == "<b>hi</b>"


def test_text_quotes_stripped(srv):
    assert main_text(srv.execute("'abc'")) == ["abc"]


def test_dataframe_through_hutch_display(srv):
    lines = srv.execute("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    (r,) = [x for x in of(lines, "result") if x["is_main_result"]]
    assert "html" in r
    assert r.get("data", {}).get("a") == [1, 2], r


def test_matplotlib_figure_displays_png(srv):
    lines = srv.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()")
    pngs = [x for x in of(lines, "result") if "png" in x]
    assert pngs, lines
    assert pngs[0]["is_main_result"] is False


def test_contexts_create_with_cwd_list_delete(srv, tmp_path):
    ctx = new_context(srv, cwd=str(tmp_path))
    assert ctx["language"] == "python" and ctx["cwd"] == str(tmp_path) and ctx["id"]
    assert main_text(srv.execute("import os; os.getcwd()", context_id=ctx["id"])) == [str(tmp_path)]
    assert ctx["id"] in [c["id"] for c in srv.json("GET", "/contexts")]
    status, _, body = srv.request("DELETE", f"/contexts/{ctx['id']}")
    assert status == 200 and json.loads(body) is None
    assert ctx["id"] not in [c["id"] for c in srv.json("GET", "/contexts")]
    status, _, body = srv.request("POST", "/execute", {"code": "1", "context_id": ctx["id"]})
    assert status == 404 and body.decode() == f"Context {ctx['id']} not found"
    assert srv.request("DELETE", f"/contexts/{ctx['id']}")[0] == 404


def test_context_default_cwd_is_home(srv):
    ctx = new_context(srv)
    assert ctx["cwd"] == str(srv.home)
    assert main_text(srv.execute("import os; os.getcwd()", context_id=ctx["id"])) == [str(srv.home)]
    srv.request("DELETE", f"/contexts/{ctx['id']}")


def test_context_restart_loses_state(srv):
    ctx = new_context(srv)
    srv.execute("gone = 1", context_id=ctx["id"])
    status, _, body = srv.request("POST", f"/contexts/{ctx['id']}/restart")
    assert status == 200
    lines = srv.execute("gone", context_id=ctx["id"])
    assert of(lines, "error")[0]["name"] == "NameError"
    assert srv.request("POST", "/contexts/nope/restart")[0] == 404
    srv.request("DELETE", f"/contexts/{ctx['id']}")


def test_context_id_and_language_is_400(srv):
    status, ctype, body = srv.request("POST", "/execute", {"code": "1", "context_id": "x", "language": "python"})
    assert status == 400 and ctype.startswith("text/plain")


def test_unknown_context_is_404(srv):
    status, ctype, body = srv.request("POST", "/execute", {"code": "1", "context_id": "no-such-context"})
    assert status == 404 and body.decode() == "Context no-such-context not found"


def test_unknown_language_is_400(srv):
    status, ctype, body = srv.request("POST", "/execute", {"code": "1", "language": "cobol"})
    assert status == 400 and ctype.startswith("text/plain")
    assert "cobol" in body.decode() and "python3" in body.decode()
    assert srv.request("POST", "/contexts", {"language": "cobol"})[0] == 400


@pytest.mark.skipif(Path("/usr/share/jupyter/kernels/deno").exists(), reason="a deno kernel is installed")
def test_language_without_kernel_is_400(srv):
    # A language interpd knows whose kernel this machine lacks (bash_kernel is not packaged by
    # Debian; Deno's kernel comes with make deps).
    kernels = {"bash": "bash", "JS": "deno", "r": "ir"}
    dirs = ["/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels",
            os.path.expanduser("~/.local/share/jupyter/kernels")]
    missing = [lang for lang, k in kernels.items() if not any(os.path.isdir(os.path.join(d, k)) for d in dirs)]
    if not missing:
        pytest.skip("every kernel interpd knows is installed here")
    status, _, body = srv.request("POST", "/execute", {"code": "1", "language": missing[0]})
    text = body.decode()
    name = {"JS": "javascript"}.get(missing[0], missing[0])
    assert status == 400 and name in text and "installed kernels" in text


def test_bad_requests(srv):
    assert srv.request("POST", "/execute", b"{not json")[0] == 400
    assert srv.request("POST", "/execute", {"language": "python"})[0] == 400
    assert srv.request("POST", "/execute", {"code": "1", "env_vars": {"A-B": "x"}})[0] == 400
    assert srv.request("POST", "/execute", {"code": "1", "env_vars": {"A": 1}})[0] == 400
    assert srv.request("GET", "/nope")[0] == 404


def test_env_vars_apply_to_one_execution(srv):
    srv.execute("import os; os.environ['HUTCH_KEEP'] = 'before'; os.environ.pop('HUTCH_NEW', None)")
    value = "it's \"quoted\"\n$(x) \u00e9"
    lines = srv.execute("import os; (os.environ['HUTCH_KEEP'], os.environ['HUTCH_NEW'])",
                        env_vars={"HUTCH_KEEP": "during", "HUTCH_NEW": value})
    assert of(lines, "error") == []
    assert main_text(lines) == [repr(("during", value))]
    after = srv.execute("import os; (os.environ.get('HUTCH_KEEP'), os.environ.get('HUTCH_NEW'))")
    assert main_text(after) == [repr(("before", None))]


def test_interrupt_when_client_disconnects(srv):
    ctx = new_context(srv)
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("POST", "/execute", body=json.dumps({"code": "import time; time.sleep(30)", "context_id": ctx["id"]}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    assert json.loads(r.readline())["type"] == "number_of_executions"
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    t0 = time.monotonic()
    lines = srv.execute("'after'", context_id=ctx["id"], timeout=20)
    assert main_text(lines) == ["after"]
    assert time.monotonic() - t0 < 5
    assert "interrupting" in srv.log_text()
    srv.request("DELETE", f"/contexts/{ctx['id']}")


def test_killed_kernel_reports_error_and_restarts(srv):
    ctx = new_context(srv)
    lines = srv.execute("import os; os.kill(os.getpid(), 9)", context_id=ctx["id"])
    (err,) = of(lines, "error")
    assert err["name"] == "KernelDied" and "signal 9" in err["value"]
    assert lines[-1] == {"type": "end_of_execution"}
    assert main_text(srv.execute("1+1", context_id=ctx["id"])) == ["2"]
    srv.request("DELETE", f"/contexts/{ctx['id']}")


def test_keepalive_during_long_execution(srv):
    t0 = time.monotonic()
    lines = srv.execute("import time; time.sleep(6); 'done'")
    assert time.monotonic() - t0 >= 6
    assert of(lines, "keepalive")
    assert main_text(lines) == ["done"]
    assert lines[-1]["type"] == "end_of_execution"


def test_concurrent_executions_on_one_context_are_serialized(srv):
    ctx = new_context(srv)
    srv.execute("import time\norder = []", context_id=ctx["id"])
    results = []

    def run(i):
        results.append(srv.execute(f"order.append({i}); time.sleep(0.3); len(order)", context_id=ctx["id"]))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(main_text(r)[0] for r in results) == ["1", "2", "3"]
    srv.request("DELETE", f"/contexts/{ctx['id']}")


@pytest.mark.skipif(not HAVE_IR, reason="no IRkernel kernelspec")
def test_r_context(srv):
    ctx = new_context(srv, language="R")
    assert ctx["language"] == "r"
    lines = srv.execute("1+1", context_id=ctx["id"])
    texts = [r.get("text", "") for r in of(lines, "result")]
    assert any("2" in t for t in texts), lines
    lines = srv.execute("Sys.getenv('HUTCH_R')", context_id=ctx["id"], env_vars={"HUTCH_R": "r-value"})
    assert any("r-value" in r.get("text", "") for r in of(lines, "result")), lines
    lines = srv.execute("Sys.getenv('HUTCH_R', unset = 'unset')", context_id=ctx["id"])
    assert any("unset" in r.get("text", "") for r in of(lines, "result")), lines
    srv.request("DELETE", f"/contexts/{ctx['id']}")


class FakeEnvd(BaseHTTPRequestHandler):
    tokens = []

    def do_GET(self):
        FakeEnvd.tokens.append(self.headers.get("X-Access-Token"))
        body = json.dumps({"SANDBOX_WIDE": "from-envd", "bad-name": "x"}).encode()
        self.send_response(200 if self.path == "/envs" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_sandbox_env_from_envd():
    envd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEnvd)
    threading.Thread(target=envd.serve_forever, daemon=True).start()
    s = Interpd("--envd-url", f"http://127.0.0.1:{envd.server_address[1]}", "--python-lib", str(PYTHON_LIB))
    try:
        lines = s.execute("import os; os.environ.get('SANDBOX_WIDE')", headers={"X-Access-Token": "tok-1"})
        assert main_text(lines) == ["from-envd"]
        assert FakeEnvd.tokens == ["tok-1"]
        s.execute("1")
        assert FakeEnvd.tokens == ["tok-1"]  # only on a context's first execution
    finally:
        assert s.stop() == 0
        envd.shutdown()


def test_e2b_local_skips_envd():
    envd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEnvd)
    threading.Thread(target=envd.serve_forever, daemon=True).start()
    FakeEnvd.tokens = []
    s = Interpd("--envd-url", f"http://127.0.0.1:{envd.server_address[1]}", env={"E2B_LOCAL": "1"})
    try:
        assert main_text(s.execute("import os; os.environ.get('SANDBOX_WIDE', 'none')")) == ["none"]
        assert FakeEnvd.tokens == []
    finally:
        assert s.stop() == 0
        envd.shutdown()


def test_preload_warms_default_context_before_health():
    s = Interpd("--preload", "import time; time.sleep(1); import numpy, pandas", wait=False)
    try:
        t0 = time.monotonic()
        s.wait_healthy()
        assert time.monotonic() - t0 >= 1
        contexts = s.json("GET", "/contexts")
        assert [c["language"] for c in contexts] == ["python"]
        lines = s.execute("import sys; 'numpy' in sys.modules")
        assert main_text(lines) == ["True"]
        assert s.json("GET", "/contexts") == contexts  # the preloaded context is the default
    finally:
        s.stop()


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_sigterm_leaves_no_kernels():
    s = Interpd()
    try:
        s.execute("1")
        if HAVE_IR:
            s.execute("1", language="r")
        # A kernel's own child must go too (the whole process group is killed).
        child = int(main_text(s.execute("import subprocess; p = subprocess.Popen(['sleep', '300']); p.pid"))[0])
        pids = s.kernel_pids()
        assert len(pids) >= 1
        s.proc.terminate()
        assert s.proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while s.kernel_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.kernel_pids() == []
        assert not alive(child)
        assert not any(p.name.startswith("interpd-") for p in s.tmpdir.iterdir())
    finally:
        s.stop()


def test_sigterm_during_an_execution():
    s = Interpd()
    try:
        got = []
        t = threading.Thread(target=lambda: got.append(s.execute("import time; time.sleep(60)", timeout=30)))
        t.start()
        time.sleep(1.5)
        t0 = time.monotonic()
        s.proc.terminate()
        assert s.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 8
        t.join(timeout=10)
        if got:  # the stream ended cleanly: the kernel's death is reported
            assert got[0][-1]["type"] == "end_of_execution"
        assert s.kernel_pids() == []
    finally:
        s.stop()


def test_kernel_that_fails_to_start(tmp_path):
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/bin/sh", "-c", "exit 3", "{connection_file}"],
                                                  "display_name": "broken", "language": "python"}))
    s = Interpd("--kernel-dir", str(tmp_path / "kernels"))
    try:
        status, ctype, body = s.request("POST", "/execute", {"code": "1"})
        assert status == 500 and "exited with status 3" in body.decode()
        status, _, body = s.request("POST", "/execute", {"code": "1", "language": "r"})
        assert status == 400 and "installed kernels: python3" in body.decode()
    finally:
        assert s.stop() == 0


def test_tcp_transport_for_deno_kernelspec(tmp_path):
    """A "deno" kernelspec gets loopback TCP (Deno binds ipc endpoints as ip:port, unlike
    jupyter_client). ipykernel stands in for Deno: it speaks both transports."""
    spec = tmp_path / "kernels" / "deno"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "stand-in", "language": "typescript"}))
    s = Interpd("--kernel-dir", str(tmp_path / "kernels"))
    try:
        lines = s.execute("6*7", language="ts")
        assert main_text(lines) == ["42"]
        conn = json.loads(next(s.tmpdir.glob("interpd-*/k*/connection.json")).read_text())
        assert conn["transport"] == "tcp" and conn["ip"] == "127.0.0.1"
        ctx = s.json("GET", "/contexts")[0]
        assert ctx["language"] == "typescript"
    finally:
        assert s.stop() == 0
