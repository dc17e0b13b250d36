"""hutch_display (src/interpd/python/hutch_display.py) inside a real ipykernel.

One kernel serves every test. It is started with Debian's ipykernel through jupyter_client, loads
the module the way interpd does (a silent execute of `sys.path.insert ...; register()`), and each
test runs a cell and checks the display_data/execute_result MIME bundles it produced.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "src" / "interpd" / "python"

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
np = pytest.importorskip("numpy")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from ipykernel_util import Kernel  # noqa: E402

LOAD = f'import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); import hutch_display; hutch_display.register()'


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    try:
        status, out = k.run(LOAD, silent=True)
        assert status == "ok" and out == [], out
        status, out = k.run("import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
                            "import datetime as dt\n")
        assert status == "ok" and out == [], out
        yield k
    finally:
        k.close()


def bundles(out):
    return [(kind, c["data"]) for kind, c in out if kind in ("display_data", "execute_result")]


def no_noise(out):
    """No errors, no stderr, no warnings."""
    bad = [(k, c) for k, c in out if k == "error" or (k == "stream" and c["name"] == "stderr")]
    assert not bad, bad


def one_chart(kernel, code):
    status, out = kernel.run(code)
    assert status == "ok", out
    no_noise(out)
    bs = bundles(out)
    assert len(bs) == 1, [(k, list(d)) for k, d in bs]
    kind, data = bs[0]
    assert "image/png" in data and "text/plain" in data
    assert "e2b/chart" in data, list(data)
    chart = data["e2b/chart"]
    json.dumps(chart, allow_nan=False)
    return kind, chart


# --- loading ---------------------------------------------------------------------------------

def test_import_is_cheap_and_works_without_pandas_or_matplotlib():
    code = (
        "import sys\n"
        "for m in ('pandas', 'matplotlib', 'numpy', 'IPython'): sys.modules[m] = None\n"
        f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
        "import hutch_display\n"
        "assert hutch_display.register() is False\n"
        "print(hutch_display.json_safe({'a': float('nan'), 'b': [1, 2.5]}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "{'a': None, 'b': [1, 2.5]}"
    code = (f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); import hutch_display\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pandas', 'matplotlib', 'numpy', 'IPython')))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)


def test_register_is_idempotent_and_inline_is_on(kernel):
    status, out = kernel.run(LOAD, silent=True)
    assert status == "ok" and out == []
    status, out = kernel.run(
        "import matplotlib, os\n"
        "print(matplotlib.get_backend(), os.environ['MPLBACKEND'])\n"
        "print(sorted(k for k in get_ipython().display_formatter.formatters if k.startswith('e2b/')))\n"
        "print(get_ipython().events.callbacks['post_execute'].count(hutch_display._pre_flush))")
    assert status == "ok"
    text = "".join(c["text"] for k, c in out if k == "stream")
    assert text.splitlines() == [
        "module://matplotlib_inline.backend_inline module://matplotlib_inline.backend_inline",
        "['e2b/chart', 'e2b/data']", "1"]


# --- e2b/data --------------------------------------------------------------------------------

def test_dataframe(kernel):
    status, out = kernel.run(
        "df = pd.DataFrame({'i': np.array([1, 2, 3], dtype=np.int64),\n"
        "                   'f': [1.5, np.nan, np.inf],\n"
        "                   't': pd.to_datetime(['2024-01-02', None, '2024-03-04 05:06:07']),\n"
        "                   's': ['a', None, 'c'],\n"
        "                   'o': [np.float32(0.5), dt.date(2020, 1, 2), {'k': np.int64(7)}],\n"
        "                   'n': pd.array([1, None, 3], dtype='Int64')})\n"
        "df.columns = ['i', 'f', 't', 's', 'o', 'n']\n"
        "df")
    assert status == "ok"
    no_noise(out)
    bs = bundles(out)
    assert len(bs) == 1
    kind, data = bs[0]
    assert kind == "execute_result"
    assert "text/plain" in data and "<table" in data["text/html"]
    d = data["e2b/data"]
    json.dumps(d, allow_nan=False)
    assert d == {
        "i": [1, 2, 3],
        "f": [1.5, None, None],
        "t": ["2024-01-02T00:00:00", None, "2024-03-04T05:06:07"],
        "s": ["a", None, "c"],
        "o": [0.5, "2020-01-02", {"k": 7}],
        "n": [1, None, 3],
    }
    md = dict(out)["execute_result"]["metadata"]["e2b/data"]
    assert md == {"rows": 3, "columns": 6, "truncated": False}


def test_dataframe_bounds_and_odd_columns(kernel):
    status, out = kernel.run(
        "big = pd.DataFrame({'x': np.arange(12000), 0: np.zeros(12000), ('a', 'b'): 1})\n"
        "big.insert(3, 'x', 2, allow_duplicates=True)\n"
        "display(big)")
    assert status == "ok"
    no_noise(out)
    (kind, data), = bundles(out)
    d = data["e2b/data"]
    assert list(d) == ["x", "0", "a, b", "x.1"]
    assert all(len(v) == 10000 for v in d.values())
    assert d["x"][:3] == [0, 1, 2] and d["x"][-1] == 9999 and d["x.1"][0] == 2
    md = dict(out)["display_data"]["metadata"]["e2b/data"]
    assert md["truncated"] is True and md["rows"] == 12000 and md["rows_kept"] == 10000


# --- e2b/chart -------------------------------------------------------------------------------

def test_line_chart(kernel):
    kind, c = one_chart(kernel,
        "plt.plot([1, 2, 3], [2.0, 4.0, 8.0], label='power')\n"
        "plt.plot([1, 2, 3], [1, 1, 1])\n"
        "plt.axhline(3)\n"
        "plt.title('Heating'); plt.xlabel('Time (s)'); plt.ylabel('Temp [°C]'); plt.legend()\n"
        "plt.show()")
    assert kind == "display_data"
    assert c["type"] == "line" and c["title"] == "Heating"
    assert (c["x_label"], c["x_unit"], c["y_label"], c["y_unit"]) == \
        ("Time (s)", "s", "Temp [°C]", "°C")
    assert c["elements"] == [
        {"label": "power", "points": [[1.0, 2.0], [2.0, 4.0], [3.0, 8.0]]},
        {"label": "Line 1", "points": [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]},
    ]
    assert c["x_scale"] == c["y_scale"] == "linear"
    assert len(c["x_ticks"]) == len(c["x_tick_labels"]) > 2
    assert 1.0 in c["x_ticks"] and "1.00" in c["x_tick_labels"]


def test_line_chart_log_and_datetime_scales(kernel):
    kind, c = one_chart(kernel,
        "fig, ax = plt.subplots()\n"
        "ax.plot(pd.date_range('2024-01-01', periods=4, freq='D'), [1, 10, 100, 1000])\n"
        "ax.set_yscale('log')\n"
        "plt.show()")
    assert c["type"] == "line"
    assert c["x_scale"] == "datetime" and c["y_scale"] == "log"
    assert c["elements"][0]["points"][0] == ["2024-01-01T00:00:00", 1.0]
    assert c["elements"][0]["points"][3] == ["2024-01-04T00:00:00", 1000.0]
    assert all(isinstance(t, str) and t.startswith("2024-01-") for t in c["x_ticks"])
    assert 100.0 in c["y_ticks"]


def test_figure_as_last_expression_is_shown_once(kernel):
    kind, c = one_chart(kernel,
        "fig, ax = plt.subplots()\n"
        "ax.plot(['a', 'b', 'c'], [3, 1, 2])\n"
        "fig")
    assert kind == "execute_result"
    assert c["type"] == "line" and c["x_scale"] == "categorical"
    assert c["elements"][0]["points"] == [["a", 3.0], ["b", 1.0], ["c", 2.0]]
    assert c["x_tick_labels"] == ["a", "b", "c"]
    # And the next cell starts clean: the figure was closed like any other inline figure.
    status, out = kernel.run("print(len(plt.get_fignums()))")
    assert [c["text"] for k, c in out if k == "stream"] == ["0\n"]


def test_scatter(kernel):
    kind, c = one_chart(kernel,
        "plt.scatter([1, 2, 3], [4, 5, 6], label='a')\n"
        "plt.scatter([7], [8])\n"
        "plt.xlabel('Distance (km)');")
    assert kind == "display_data"           # shown by the end-of-cell flush
    assert c["type"] == "scatter" and c["x_unit"] == "km"
    assert c["elements"] == [
        {"label": "a", "points": [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]},
        {"label": "Series 1", "points": [[7.0, 8.0]]},
    ]
    assert c["x_scale"] == "linear" and c["y_ticks"] and c["y_tick_labels"]


def test_scatter_with_dates(kernel):
    kind, c = one_chart(kernel,
        "plt.scatter([dt.date(2024, 5, 1), dt.date(2024, 5, 3)], [1, 2]); plt.show()")
    assert c["type"] == "scatter" and c["x_scale"] == "datetime"
    assert c["elements"][0]["points"] == [["2024-05-01T00:00:00", 1.0], ["2024-05-03T00:00:00", 2.0]]


def test_bar_chart(kernel):
    kind, c = one_chart(kernel,
        "plt.bar(['apples', 'pears'], [3, 5]); plt.ylabel('Count (kg)'); plt.title('Fruit'); plt.show()")
    assert c["type"] == "bar" and c["title"] == "Fruit" and c["y_unit"] == "kg"
    assert c["elements"] == [{"label": "apples", "value": 3.0, "group": "Group 0"},
                             {"label": "pears", "value": 5.0, "group": "Group 0"}]


def test_grouped_and_horizontal_bars(kernel):
    kind, c = one_chart(kernel,
        "x = np.arange(3)\n"
        "plt.bar(x - 0.2, [1, 2, 3], 0.4, label='2023')\n"
        "plt.bar(x + 0.2, [3, 2, 1], 0.4, label='2024')\n"
        "plt.xticks(x, ['A', 'B', 'C']); plt.show()")
    assert c["type"] == "bar"
    assert c["elements"] == [
        {"label": "A", "value": 1.0, "group": "2023"}, {"label": "B", "value": 2.0, "group": "2023"},
        {"label": "C", "value": 3.0, "group": "2023"}, {"label": "A", "value": 3.0, "group": "2024"},
        {"label": "B", "value": 2.0, "group": "2024"}, {"label": "C", "value": 1.0, "group": "2024"}]
    kind, c = one_chart(kernel,
        "plt.barh(['x', 'y'], [5, 6], xerr=[1, 1], label='h'); plt.xlabel('Mass (g)'); plt.show()")
    assert c["type"] == "bar"
    # x_* describe the category axis, y_* the value axis, whatever the orientation.
    assert c["y_label"] == "Mass (g)" and c["y_unit"] == "g" and c["x_label"] is None
    assert c["elements"] == [{"label": "x", "value": 5.0, "group": "h"},
                             {"label": "y", "value": 6.0, "group": "h"}]


def test_pie(kernel):
    kind, c = one_chart(kernel,
        "plt.pie([1, 2, 3], labels=['a', 'b', 'c']); plt.title('Share'); plt.show()")
    assert c == {"type": "pie", "title": "Share", "elements": [
        {"label": "a", "angle": 60.0, "radius": 1.0},
        {"label": "b", "angle": 120.0, "radius": 1.0},
        {"label": "c", "angle": 180.0, "radius": 1.0}]}


@pytest.mark.parametrize("opts", ["", "vert=False, patch_artist=True, notch=True, showmeans=True"])
def test_box_and_whisker(kernel, opts):
    rng = np.random.default_rng(7)
    a = [round(x, 6) for x in rng.normal(0, 1, 60)]
    b = [round(x, 6) for x in rng.normal(5, 2, 40)] + [25.0, -12.0]
    kind, c = one_chart(kernel,
        f"plt.boxplot([{a!r}, {b!r}], labels=['ctl', 'exp'], {opts})\n"
        f"plt.{'xlabel' if 'vert=False' in opts else 'ylabel'}('Dose (mg)')\n"
        "plt.show()")
    assert c["type"] == "box_and_whisker"
    assert c["y_unit"] == "mg"
    assert [e["label"] for e in c["elements"]] == ["ctl", "exp"]
    for e, data in zip(c["elements"], (a, b)):
        q1, med, q3 = np.percentile(data, [25, 50, 75])
        iqr = q3 - q1
        inside = [x for x in data if q1 - 1.5 * iqr <= x <= q3 + 1.5 * iqr]
        assert e["first_quartile"] == pytest.approx(q1)
        assert e["median"] == pytest.approx(med)
        assert e["third_quartile"] == pytest.approx(q3)
        assert e["min"] == pytest.approx(min(inside))
        assert e["max"] == pytest.approx(max(inside))
        assert sorted(e["outliers"]) == pytest.approx(sorted(set(data) - set(inside)))
    assert sorted(c["elements"][1]["outliers"])[0] == -12.0


def test_superchart(kernel):
    kind, c = one_chart(kernel,
        "fig, (a1, a2) = plt.subplots(1, 2)\n"
        "a1.plot([0, 1], [0, 1], label='l'); a1.set_title('left')\n"
        "a2.bar(['q', 'r'], [1, 2]); a2.set_title('right')\n"
        "fig.suptitle('Both'); plt.show()")
    assert c["type"] == "superchart" and c["title"] == "Both"
    assert [(e["type"], e["title"]) for e in c["elements"]] == [("line", "left"), ("bar", "right")]
    assert c["elements"][0]["elements"] == [{"label": "l", "points": [[0.0, 0.0], [1.0, 1.0]]}]


def test_unknown_chart(kernel):
    kind, c = one_chart(kernel,
        "fig, ax = plt.subplots(); im = ax.imshow(np.arange(9).reshape(3, 3))\n"
        "fig.colorbar(im); ax.set_title('Heat'); ax.set_xlabel('Col (px)'); plt.show()")
    # The colorbar is not a chart of its own; the image is not a recognized chart.
    assert c == {"type": "unknown", "title": "Heat", "x_label": "Col (px)", "y_label": None,
                 "x_unit": "px", "y_unit": None, "elements": []}


def test_figure_without_axes_has_no_chart(kernel):
    status, out = kernel.run("fig = plt.figure(); fig.text(0.5, 0.5, 'just text'); plt.show()")
    assert status == "ok"
    no_noise(out)
    (kind, data), = bundles(out)
    # IPython renders no png for a figure without axes; hutch adds no chart either.
    assert data == {"text/plain": "<Figure size 640x480 with 0 Axes>"}


def test_formatter_failures_fall_back(kernel):
    status, out = kernel.run(
        "_saved = (hutch_display.dataframe_data, hutch_display.figure_chart)\n"
        "def _boom(*a): raise RuntimeError('boom')\n"
        "hutch_display.dataframe_data = hutch_display.figure_chart = _boom\n")
    assert status == "ok"
    try:
        status, out = kernel.run(
            "display(pd.DataFrame({'a': [1]}))\n"
            "plt.plot([1, 2]); plt.show()\n"
            "print('after')\n"
            "pd.DataFrame({'b': [2]})")
        assert status == "ok", out
        no_noise(out)
        bs = bundles(out)
        assert [k for k, _ in bs] == ["display_data", "display_data", "execute_result"]
        assert "text/html" in bs[0][1] and "e2b/data" not in bs[0][1]
        assert "image/png" in bs[1][1] and "e2b/chart" not in bs[1][1]
        assert "text/html" in bs[2][1] and "e2b/data" not in bs[2][1]
        assert [c["text"] for k, c in out if k == "stream"] == ["after\n"]
        status, out = kernel.run("print(len(hutch_display.errors) >= 3, 'boom' in hutch_display.errors[-1])")
        assert [c["text"] for k, c in out if k == "stream"] == ["True True\n"]
    finally:
        status, out = kernel.run(
            "hutch_display.dataframe_data, hutch_display.figure_chart = _saved")
        assert status == "ok"
