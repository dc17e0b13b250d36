"""hutch_dispatch (src/interpd/python/hutch_dispatch.py) inside a real ipykernel.

Each test starts its own kernel (the trims change module-level state), loads the module the way
interpd's setup does, and checks from inside the kernel that each trim is in place and answers
what the stock code answers.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "src" / "interpd" / "python"

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from ipykernel_util import Kernel  # noqa: E402

LOAD = f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); import hutch_dispatch"


@pytest.fixture
def kernel():
    k = Kernel()
    try:
        status, out = k.run(LOAD, silent=True)
        assert status == "ok" and out == [], out
        yield k
    finally:
        k.close()


def result(kernel, code):
    """Runs code whose last line prints one JSON value; returns it."""
    status, out = kernel.run(code)
    assert status == "ok", out
    text = "".join(c["text"] for kind, c in out if kind == "stream" and c["name"] == "stdout")
    assert not [c for kind, c in out if kind == "error" or (kind == "stream" and c["name"] == "stderr")], out
    return json.loads(text)


LOG_STATE = ("import json, logging\n"
             "log = get_ipython().kernel.log\n"
             "print(json.dumps([log.getEffectiveLevel(), log.isEnabledFor(logging.DEBUG),"
             " log.isEnabledFor(logging.WARNING)]))")


def test_kernel_log_skips_debug_records_until_log_level_is_set(kernel):
    # Stock: traitlets leaves the application's logger at DEBUG, its handler at WARNING.
    assert result(kernel, LOG_STATE) == [10, True, True]
    assert result(kernel, "import json; print(json.dumps(hutch_dispatch.install()))") is True
    assert result(kernel, LOG_STATE) == [30, False, True]
    # The handler still gets warnings: a record emitted at WARNING reaches it.
    assert result(kernel, "import json, logging\n"
                          "log = get_ipython().kernel.log\n"
                          "seen = []\n"
                          "h = logging.Handler(logging.WARNING); h.emit = seen.append\n"
                          "log.addHandler(h)\n"
                          "log.debug('d'); log.warning('w')\n"
                          "log.removeHandler(h)\n"
                          "print(json.dumps([r.getMessage() for r in seen]))") == ["w"]
    # Asking for debug messages the supported way (traitlets reconfigures logging) works: the
    # kernel's debug messages (this very execution's) are printed.
    status, out = kernel.run("get_ipython().kernel.parent.log_level = 10\n" + LOG_STATE)
    assert status == "ok"
    assert json.loads("".join(c["text"] for kind, c in out if kind == "stream" and c["name"] == "stdout")) == [10, True, True]
    assert "[IPKernelApp]" in "".join(c["text"] for kind, c in out if kind == "stream" and c["name"] == "stderr")


def test_lowest_handler_level_follows_propagation():
    import logging
    import sys
    sys.path.insert(0, str(MODULE_DIR))
    try:
        import hutch_dispatch
    finally:
        sys.path.remove(str(MODULE_DIR))
    parent = logging.getLogger("hutch-test-parent")
    parent.propagate = False  # not on to the root logger, where pytest has its own handlers
    child = logging.getLogger("hutch-test-parent.child")
    child.addHandler(logging.NullHandler(logging.ERROR))
    child.propagate = False
    assert hutch_dispatch._lowest_handler_level(child) == logging.ERROR
    child.propagate = True
    parent.addHandler(logging.NullHandler(logging.INFO))
    assert hutch_dispatch._lowest_handler_level(child) == logging.INFO
    parent.addHandler(logging.NullHandler(logging.NOTSET))
    assert hutch_dispatch._lowest_handler_level(child) == 1


def test_accepts_cell_id_is_cached_and_answers_as_before(kernel):
    code = ("import inspect, json\n"
            "from ipykernel import ipkernel, kernelbase\n"
            "stock = kernelbase._accepts_cell_id\n"
            "hutch_dispatch.install()\n"
            "cached = kernelbase._accepts_cell_id\n"
            "k = get_ipython().kernel; sh = get_ipython()\n"
            "def with_id(code, *, cell_id=None): pass\n"
            "def without(code): pass\n"
            "def kw(code, **kw): pass\n"
            "fns = [k.do_execute, sh.run_cell_async, sh.run_cell, with_id, without, kw]\n"
            "same = [bool(cached(f)) == bool(stock(f)) for f in fns] + [bool(cached(f)) == bool(stock(f)) for f in fns]\n"
            "calls = []\n"
            "real = inspect.signature\n"
            "inspect.signature = lambda f, *a, **kw: calls.append(f) or real(f, *a, **kw)\n"
            "try:\n"
            "    for _ in range(3): cached(k.do_execute); cached(sh.run_cell_async)\n"
            "finally:\n"
            "    inspect.signature = real\n"
            "print(json.dumps([cached is not stock, ipkernel._accepts_cell_id is cached, all(same),"
            " len(calls), [bool(cached(f)) for f in (with_id, without, kw)]]))")
    assert result(kernel, code) == [True, True, True, 0, [True, False, True]]


def test_dates_parse_as_dateutil_did_and_replies_keep_the_request_date(kernel):
    forms = ["2026-11-26T18:00:00.123456Z", "2026-11-26T18:00:00Z", "2026-11-26T18:00:00.12+01:00",
             "2026-11-26T18:00:00.1-0530", "2026-11-26T18:00:00.123+00:00", "not a date"]
    code = ("import json\n"
            "from dateutil.parser import parse\n"
            "from jupyter_client import jsonutil\n"
            "hutch_dispatch.install()\n"
            f"forms = {forms!r}\n"
            "got = [jsonutil.parse_date(s) for s in forms]\n"
            "want = [parse(s) for s in forms[:-1]] + [forms[-1]]\n"
            "same = [g == w and (isinstance(g, str) or (g.utcoffset() == w.utcoffset()"
            " and g.isoformat() == w.isoformat())) for g, w in zip(got, want)]\n"
            "d = get_ipython().kernel.get_parent()['header']['date']\n"
            "fallback = jsonutil._dateutil_parse('Nov 26 2026 18:00') == parse('Nov 26 2026 18:00')\n"
            "print(json.dumps([same, jsonutil._dateutil_parse is not parse, fallback,"
            " type(d).__name__, d.utcoffset().total_seconds()]))")
    assert result(kernel, code) == [[True] * len(forms), True, True, "datetime", 0.0]
    # A reply's parent header carries the request's date back, to the microsecond.
    kc = kernel.kc
    request = kc.session.msg("execute_request", {"code": "1+1", "silent": False, "store_history": True,
                                                 "user_expressions": {}, "allow_stdin": False})
    kc.shell_channel.send(request)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            break
    assert reply["content"]["status"] == "ok"
    assert reply["parent_header"]["date"] == request["header"]["date"]
    assert reply["parent_header"]["date"].microsecond == request["header"]["date"].microsecond
