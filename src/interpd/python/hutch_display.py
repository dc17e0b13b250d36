"""hutch's rich-output formatters for IPython kernels driven by interpd.

interpd loads this module silently at kernel start:

    import sys; sys.path.insert(0, "<dir>"); import hutch_display; hutch_display.register()

register() adds two MIME types to the kernel's display formatter:

  e2b/data   pandas DataFrames as a JSON object {column: [values, ...]} (JSON-safe, bounded)
  e2b/chart  matplotlib figures as {type, title, elements[], ...} (see docs/internals/interpd-display.md)

and makes sure matplotlib uses the inline backend, so figures display as image/png (plus
e2b/chart) after plt.show() or at the end of a cell. A result of a builtin scalar type (int,
float, str, ...) that no formatter has a printer for is formatted as text/plain alone, without
running the other formatters, which could only return nothing for it (_plain_formatter).

Design rules:
  * importing this module costs only the standard library; pandas, numpy and matplotlib are
    looked up in sys.modules when an object is formatted and never imported here;
  * a formatter never raises: any failure is recorded in `errors` and the object falls back to
    its ordinary display (text/plain, text/html, image/png);
  * register() is idempotent.
"""

import collections
import datetime as _dt
import decimal
import fractions
import math
import os
import re
import sys
import traceback

__all__ = ["register", "dataframe_data", "figure_chart", "errors"]

# Bounds on e2b/data.
MAX_ROWS = 10_000
MAX_COLUMNS = 1_000
MAX_CELLS = 500_000          # rows are cut further so rows * columns stays under this
MAX_BYTES = 16 << 20         # ... and so the JSON stays under about this many bytes
MAX_STRING = 10_000          # characters kept of any one string value
MAX_NESTED = 100             # items kept of a list/dict found inside a cell
# Bounds on e2b/chart.
MAX_POINTS = 10_000          # points kept per line/scatter series (evenly subsampled)
MAX_SERIES = 500             # elements kept per chart
MAX_AXES = 100               # sub-charts kept in a superchart

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# The last formatter failures (formatted tracebacks), newest last, for debugging.
errors = collections.deque(maxlen=20)


def _record_error():
    try:
        errors.append(traceback.format_exc())
    except Exception:  # pragma: no cover - formatting a traceback should not fail
        pass


# ---------------------------------------------------------------------------------------------
# JSON-safe values
# ---------------------------------------------------------------------------------------------

def _cap_str(s):
    if len(s) > MAX_STRING:
        return s[:MAX_STRING] + "\u2026"
    return s


def _finite(x):
    """A float, or None for NaN and the infinities (JSON has neither)."""
    return x if math.isfinite(x) else None


def _iso_datetime64(v, np):
    if np.isnat(v):
        return None
    sec = v.astype("datetime64[s]")
    if sec == v:
        return str(sec)
    return str(v.astype("datetime64[us]"))


def _duration_iso(td):
    """ISO 8601 duration of a datetime.timedelta, the way pandas writes one (P1DT2H3M4.5S)."""
    total_us = td.days * 86_400_000_000 + td.seconds * 1_000_000 + td.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rem = divmod(total_us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micros = divmod(rem, 1_000_000)
    sec = f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") if micros else str(seconds)
    return f"{sign}P{days}DT{hours}H{minutes}M{sec}S"


def json_safe(v, _depth=0):
    """Any Python/numpy/pandas value as something json.dumps accepts without NaN/Infinity:
    NaN, NaT, NA, None -> None; numpy scalars -> Python numbers; datetimes -> ISO strings;
    durations -> ISO 8601 durations; containers -> lists/dicts (bounded); anything else -> str."""
    if v is None or isinstance(v, (bool, str)):
        return _cap_str(v) if isinstance(v, str) else v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _finite(float(v))
    pd = sys.modules.get("pandas")
    if pd is not None:
        if v is pd.NaT or v is getattr(pd, "NA", None):
            return None
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        if isinstance(v, pd.Timedelta):
            return v.isoformat()
        if isinstance(v, (pd.Period, pd.Interval)):
            return str(v)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.generic):
        if isinstance(v, np.datetime64):
            return _iso_datetime64(v, np)
        if isinstance(v, np.timedelta64):
            if np.isnat(v):
                return None
            return _duration_iso(_dt.timedelta(microseconds=int(v.astype("timedelta64[us]").astype("int64"))))
        if isinstance(v, np.complexfloating):
            return str(complex(v))
        if isinstance(v, (np.bytes_, np.str_)):
            return json_safe(v.item(), _depth)
        try:
            return json_safe(v.item(), _depth)
        except Exception:
            return _cap_str(str(v))
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return _duration_iso(v)
    if isinstance(v, (decimal.Decimal, fractions.Fraction)):
        try:
            return _finite(float(v))
        except Exception:
            return str(v)
    if isinstance(v, complex):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _cap_str(bytes(v[:MAX_STRING * 4]).decode("utf-8", "replace"))
    if _depth < 3:
        if isinstance(v, dict):
            out = {}
            for i, (k, x) in enumerate(v.items()):
                if i >= MAX_NESTED:
                    break
                out[k if isinstance(k, str) else str(json_safe(k, _depth + 1))] = json_safe(x, _depth + 1)
            return out
        if isinstance(v, (list, tuple, set, frozenset)) or (
                np is not None and isinstance(v, np.ndarray)):
            out = []
            for i, x in enumerate(v):
                if i >= MAX_NESTED:
                    break
                out.append(json_safe(x, _depth + 1))
            return out
    try:
        return _cap_str(str(v))
    except Exception:
        return "<%s>" % type(v).__name__


# ---------------------------------------------------------------------------------------------
# e2b/data: pandas DataFrames
# ---------------------------------------------------------------------------------------------

def _column_key(name):
    if isinstance(name, str):
        return name
    if isinstance(name, tuple):  # MultiIndex columns
        return ", ".join(str(json_safe(p)) for p in name if not (isinstance(p, str) and p == ""))
    s = json_safe(name)
    return s if isinstance(s, str) else json_safe_str(s)


def json_safe_str(v):
    return "null" if v is None else str(v)


def _column_values(series, np):
    """The values of one column (a pandas Series) as a list of JSON-safe values."""
    dtype = series.dtype
    kind = getattr(dtype, "kind", "O")
    is_numpy_dtype = isinstance(dtype, np.dtype)
    if is_numpy_dtype and kind in "iub":
        return series.to_numpy().tolist()
    if is_numpy_dtype and kind == "f":
        return [x if math.isfinite(x) else None for x in series.to_numpy().tolist()]
    if is_numpy_dtype and kind == "M":
        arr = series.to_numpy()
        return [_iso_datetime64(x, np) for x in arr]
    # Everything else (object, tz-aware datetimes, categoricals, nullable and string dtypes,
    # periods, intervals, timedeltas): element by element.
    return [json_safe(x) for x in series.astype(object)]


def _columns_data(sub, np):
    data = {}
    for i in range(sub.shape[1]):
        key = _column_key(sub.columns[i])
        if key in data:
            n = 1
            while f"{key}.{n}" in data:
                n += 1
            key = f"{key}.{n}"
        data[key] = _column_values(sub.iloc[:, i], np)
    return data


def dataframe_data(df):
    """(data, metadata) for a DataFrame: data is {column: [values]} of the first rows and
    columns, metadata says how much was kept. Column names become strings; a repeated name gets
    a suffix (.1, .2, ...). The index is not included."""
    import json
    np = sys.modules.get("numpy")
    n_rows, n_cols = df.shape
    cols = min(n_cols, MAX_COLUMNS)
    rows = min(n_rows, MAX_ROWS)
    if cols and rows * cols > MAX_CELLS:
        rows = max(1, MAX_CELLS // cols)
    # Size the output from a sample of rows, so wide text columns cannot make it huge.
    sample = min(rows, 200)
    if sample and cols:
        size = len(json.dumps(_columns_data(df.iloc[:sample, :cols], np), ensure_ascii=False))
        per_row = size / sample
        if rows * per_row > MAX_BYTES:
            rows = max(1, int(MAX_BYTES // per_row))
    data = _columns_data(df.iloc[:rows, :cols], np)
    meta = {"rows": int(n_rows), "columns": int(n_cols),
            "truncated": bool(rows < n_rows or cols < n_cols)}
    if meta["truncated"]:
        meta["rows_kept"] = int(rows)
        meta["columns_kept"] = int(cols)
    return data, meta


def _format_dataframe(obj):
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(obj, pd.DataFrame):
        return None
    return dataframe_data(obj)


# ---------------------------------------------------------------------------------------------
# e2b/chart: matplotlib figures
# ---------------------------------------------------------------------------------------------

_UNIT_AT_END = re.compile(r"[\(\[]\s*([^()\[\]]+?)\s*[\)\]]\s*$")
_UNIT_ANYWHERE = re.compile(r"\s[\(\[]\s*([^()\[\]]+?)\s*[\)\]]")


def _unit_of(label):
    if not label:
        return None
    m = _UNIT_AT_END.search(label) or _UNIT_ANYWHERE.search(label)
    return m.group(1) if m else None


def _text_or_none(s):
    return s if isinstance(s, str) and s.strip() else None


def _axes_title(ax):
    for loc in ("center", "left", "right"):
        t = _text_or_none(ax.get_title(loc))
        if t:
            return t
    return None


def _fig_title(fig):
    t = getattr(fig, "_suptitle", None)
    return _text_or_none(t.get_text()) if t is not None else None


def _series_label(artist, prefix, index):
    """The legend label of a series, or "<prefix> <index>" for an unlabelled one."""
    label = artist.get_label()
    if isinstance(label, str) and label and not label.startswith("_"):
        return label
    return f"{prefix} {index}"


def _num(x):
    try:
        return _finite(float(x))
    except Exception:
        return json_safe(x)


def _round(x, digits=10):
    """Rounds away float noise (89.99999999999999) from derived values."""
    if not isinstance(x, float) or x == 0 or not math.isfinite(x):
        return x
    return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _is_date_axis(axis):
    mdates = sys.modules.get("matplotlib.dates")
    parts = (getattr(axis, "converter", None), axis.get_major_locator(), axis.get_major_formatter())
    if mdates is not None:
        date_types = tuple(t for t in (
            getattr(mdates, "DateConverter", None), getattr(mdates, "_SwitchableDateConverter", None),
            getattr(mdates, "ConciseDateConverter", None), getattr(mdates, "DateLocator", None),
            getattr(mdates, "DateFormatter", None), getattr(mdates, "AutoDateFormatter", None),
            getattr(mdates, "ConciseDateFormatter", None)) if isinstance(t, type))
        if any(isinstance(p, date_types) for p in parts):
            return True
    return _pandas_period_freq(axis) is not None


def _pandas_period_freq(axis):
    """pandas time-series plots put Period ordinals on the axis; the frequency is on the
    TimeSeries_DateFormatter/Locator pandas installs."""
    for p in (axis.get_major_formatter(), axis.get_major_locator()):
        mod = type(p).__module__ or ""
        if mod.startswith("pandas") and type(p).__name__.startswith("TimeSeries_Date"):
            return getattr(p, "freq", None)
    return None


def _category_names(axis):
    mcat = sys.modules.get("matplotlib.category")
    units = getattr(axis, "units", None)
    if mcat is not None and isinstance(units, mcat.UnitData):
        return {v: k for k, v in units._mapping.items()}
    return None


def _axis_value_converter(axis):
    """A function turning a converted (float) coordinate on this axis back into what the user
    plotted: ISO strings on date axes, category names on categorical axes, floats elsewhere."""
    if _is_date_axis(axis):
        freq = _pandas_period_freq(axis)
        pd = sys.modules.get("pandas")
        if freq is not None and pd is not None:
            def conv(x):
                try:
                    return pd.Period(ordinal=int(round(float(x))), freq=freq).to_timestamp().isoformat()
                except Exception:
                    return _num(x)
            return conv
        mdates = sys.modules["matplotlib.dates"]

        def conv(x):
            try:
                f = float(x)
                if not math.isfinite(f):
                    return None
                d = mdates.num2date(f)
                # Naive datetimes come back as UTC: write them naive, as the user gave them.
                if d.utcoffset() == _dt.timedelta(0):
                    d = d.replace(tzinfo=None)
                return d.isoformat()
            except Exception:
                return _num(x)
        return conv
    names = _category_names(axis)
    if names:
        def conv(x):
            try:
                f = float(x)
                i = int(round(f))
                if abs(f - i) < 1e-9 and i in names:
                    return names[i]
            except Exception:
                pass
            return _num(x)
        return conv
    return _num


def _axis_scale(axis):
    if _is_date_axis(axis):
        return "datetime"
    scale = axis.get_scale()
    if scale != "linear":
        return scale
    if _category_names(axis):
        return "categorical"
    # Positions 0..n-1 labelled with words (plt.xticks(range(n), names)): categorical.
    try:
        ticks = [float(t) for t in axis.get_majorticklocs()]
        labels = [t.get_text() for t in axis.get_majorticklabels()]
        if ticks and all(t == i for i, t in enumerate(ticks)) and any(labels):
            def numeric(s):
                try:
                    float(s.replace("\u2212", "-"))
                    return True
                except ValueError:
                    return False
            if not any(numeric(lb) for lb in labels if lb):
                return "categorical"
    except Exception:
        pass
    return "linear"


def _ticks(axis):
    conv = _axis_value_converter(axis) if _is_date_axis(axis) else (lambda t: _round(_num(t), 12))
    locs = list(axis.get_majorticklocs())
    labels = [t.get_text() for t in axis.get_majorticklabels()]
    return [conv(t) for t in locs], labels[:len(locs)]


def _labels_2d(ax, swap=False):
    x, y = _text_or_none(ax.get_xlabel()), _text_or_none(ax.get_ylabel())
    if swap:
        x, y = y, x
    return {"x_label": x, "y_label": y, "x_unit": _unit_of(x), "y_unit": _unit_of(y)}


def _subsample_index(n):
    if n <= MAX_POINTS:
        return None
    step = (n - 1) / (MAX_POINTS - 1)
    return [int(round(i * step)) for i in range(MAX_POINTS)]


def _values_list(data, n, idx):
    """The first n values of original (unconverted) plot data as JSON-safe values."""
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            arr = np.asarray(data)
            if arr.ndim != 1:
                arr = arr.ravel()
            arr = arr[:n]
            if idx is not None:
                arr = arr[idx]
            if arr.dtype.kind in "iub":
                return [float(x) for x in arr.tolist()]
            if arr.dtype.kind == "f":
                return [x if math.isfinite(x) else None for x in arr.tolist()]
            if arr.dtype.kind == "M":
                return [_iso_datetime64(x, np) for x in arr]
            return [_point_value(x) for x in arr.tolist()]
        except Exception:
            pass
    data = list(data)[:n]
    if idx is not None:
        data = [data[i] for i in idx]
    return [_point_value(x) for x in data]


def _point_value(x):
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(x, pd.Period):
        try:
            return x.to_timestamp().isoformat()
        except Exception:
            return str(x)
    v = json_safe(x)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _line_points(line):
    xd, yd = line.get_xdata(), line.get_ydata()
    n = min(len(xd), len(yd))
    idx = _subsample_index(n)
    xs = _values_list(xd, n, idx)
    ys = _values_list(yd, n, idx)
    return [[x, y] for x, y in zip(xs, ys)]


def _collection_points(ax, coll):
    offs = coll.get_offsets()
    np = sys.modules.get("numpy")
    if np is not None:
        offs = np.ma.filled(np.ma.asarray(offs, dtype=float), np.nan)
    n = len(offs)
    idx = _subsample_index(n)
    rows = offs if idx is None else offs[idx]
    cx, cy = _axis_value_converter(ax.xaxis), _axis_value_converter(ax.yaxis)
    return [[cx(r[0]), cy(r[1])] for r in rows]


def _is_data_artist(ax, artist):
    """False for axhline/axvline/axhspan-like artists (not in data coordinates)."""
    try:
        return artist.get_transform().contains_branch(ax.transData)
    except Exception:
        return True


def _collect(ax):
    """Visible, data-coordinate artists of an Axes, by kind."""
    mcoll = sys.modules.get("matplotlib.collections")
    lines = [a for a in ax.lines if a.get_visible() and _is_data_artist(ax, a)]
    colls = [a for a in ax.collections if a.get_visible()]
    patches = [a for a in ax.patches if a.get_visible() and _is_data_artist(ax, a)]
    images = [a for a in ax.images if a.get_visible()]
    extra = list(getattr(ax, "tables", [])) + images
    return lines, colls, patches, extra, mcoll


def _errorbar_parts(ax):
    """Ids of the artists that decorate errorbars (caps, bar lines, and the hidden data line
    of bar errorbars). The data line of plt.errorbar stays a series."""
    mcont = sys.modules.get("matplotlib.container")
    part_ids = set()
    if mcont is None:
        return part_ids
    for c in ax.containers:
        if isinstance(c, mcont.ErrorbarContainer):
            eb = c
        elif isinstance(c, mcont.BarContainer) and c.errorbar is not None:
            eb = c.errorbar
        else:
            continue
        data_line, caplines, barlinecols = eb.lines
        if data_line is not None and eb is not c:
            part_ids.add(id(data_line))
        for a in tuple(caplines or ()) + tuple(barlinecols or ()):
            part_ids.add(id(a))
    return part_ids


# ----- bars ----------------------------------------------------------------------------------

def _position_labeler(axis):
    """A function mapping bar/box positions on the category axis to label texts."""
    names = _category_names(axis)
    locs = [float(t) for t in axis.get_majorticklocs()]
    texts = [t.get_text() for t in axis.get_majorticklabels()]
    ticks = sorted((l, t) for l, t in zip(locs, texts) if t)
    spacing = min((b[0] - a[0] for a, b in zip(ticks, ticks[1:])), default=math.inf)
    conv = _axis_value_converter(axis)

    def exact(pos):
        if names:
            i = int(round(pos))
            if abs(pos - i) < 1e-9 and i in names:
                return names[i]
        for loc, text in ticks:
            if abs(loc - pos) <= 1e-9 * max(1.0, abs(pos)):
                return text
        return None

    def near(pos):
        if names:
            i = int(round(pos))
            if abs(pos - i) < 0.5 and i in names:
                return names[i]
        best = min(ticks, key=lambda lt: abs(lt[0] - pos), default=None)
        if best is not None and abs(best[0] - pos) < spacing / 2:
            return best[1]
        return None

    def fallback(pos):
        v = conv(pos)
        if isinstance(v, float):
            return f"{v:g}"
        return json_safe_str(v)

    return exact, near, fallback


def _bar_orientation(container):
    o = getattr(container, "orientation", None)
    if o in ("vertical", "horizontal"):
        return o
    widths = {round(p.get_width(), 12) for p in container.patches}
    heights = {round(p.get_height(), 12) for p in container.patches}
    return "horizontal" if len(heights) == 1 and len(widths) > 1 else "vertical"


def _bar_chart(ax, containers):
    orientation = _bar_orientation(containers[0])
    horizontal = orientation == "horizontal"
    cat_axis = ax.yaxis if horizontal else ax.xaxis
    exact, near, fallback = _position_labeler(cat_axis)
    elements = []
    for ci, c in enumerate(containers):
        group = _series_label(c, "Group", ci)
        rects = list(c.patches)
        if horizontal:
            centers = [r.get_y() + r.get_height() / 2 for r in rects]
            sizes = [r.get_width() for r in rects]
        else:
            centers = [r.get_x() + r.get_width() / 2 for r in rects]
            sizes = [r.get_height() for r in rects]
        labels = [exact(p) for p in centers]
        if any(l is None for l in labels):
            approx = [near(p) for p in centers]
            if all(l is not None for l in approx) and len(set(approx)) == len(approx):
                labels = approx
            else:
                labels = [l if l is not None else fallback(p) for l, p in zip(labels, centers)]
        values = getattr(c, "datavalues", None)
        if values is None or len(values) != len(rects):
            values = sizes
        for label, value in zip(labels, values):
            if len(elements) >= MAX_SERIES * 20:
                break
            elements.append({"label": label, "value": _num(value), "group": group})
    chart = {"type": "bar", "title": _axes_title(ax)}
    chart.update(_labels_2d(ax, swap=horizontal))
    chart["elements"] = elements
    return chart


# ----- box and whisker -----------------------------------------------------------------------

def _polygon_bounds(xy):
    xs = [p[0] for p in xy]
    ys = [p[1] for p in xy]
    return min(xs), max(xs), min(ys), max(ys)


def _path_points(patch):
    path = patch.get_path()
    verts = path.vertices
    codes = path.codes
    if codes is not None:
        verts = verts[codes != path.CLOSEPOLY]
    pts = patch.get_patch_transform().transform(verts) if hasattr(patch, "get_patch_transform") \
        else verts
    return pts.tolist()


def _box_chart(ax, lines, patches):
    """Recognizes Axes.boxplot/bxp output: a closed box (Line2D, or PathPatch with
    patch_artist=True) per group, a median segment across it, whiskers from the box edges
    along its centre line, caps across the whisker ends, and flier markers. Returns None when
    the artists don't fit that pattern."""
    mpatches = sys.modules.get("matplotlib.patches")
    polys, segments, markers = [], [], []
    for p in patches:
        if mpatches is None or not isinstance(p, mpatches.PathPatch):
            return None
        pts = _path_points(p)
        if len(pts) < 4:
            return None
        polys.append((p, _polygon_bounds(pts)))
    for l in lines:
        xy = l.get_xydata().tolist()
        ls = l.get_linestyle()
        if ls in ("None", "", " ") and l.get_marker() not in (None, "None", "", " "):
            markers.append((l, xy))
        elif len(xy) >= 5 and xy[0] == xy[-1]:
            polys.append((l, _polygon_bounds(xy)))
        elif len(xy) == 2:
            segments.append((l, xy))
        else:
            return None
    if not polys:
        return None

    def close(a, b):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))

    def fit(vertical):
        # pos: coordinate along the category axis; val: along the value axis.
        def pv(pt):
            return (pt[0], pt[1]) if vertical else (pt[1], pt[0])
        boxes = []
        for _, (x0, x1, y0, y1) in polys:
            p0, p1, q1, q3 = (x0, x1, y0, y1) if vertical else (y0, y1, x0, x1)
            if close(p0, p1) or q1 > q3:
                return None
            boxes.append({"p0": p0, "p1": p1, "c": (p0 + p1) / 2, "q1": q1, "q3": q3,
                          "median": None, "min": None, "max": None, "outliers": []})
        along, across = [], []
        for _, xy in segments:
            (pa, va), (pb, vb) = pv(xy[0]), pv(xy[1])
            if close(pa, pb):
                along.append((pa, min(va, vb), max(va, vb)))
            elif close(va, vb):
                across.append((min(pa, pb), max(pa, pb), va))
            else:
                return None
        for pa, lo, hi in along:            # whiskers, on the box's centre line
            for b in boxes:
                if close(pa, b["c"]) and close(hi, b["q1"]) and b["min"] is None:
                    b["min"] = lo
                    break
                if close(pa, b["c"]) and close(lo, b["q3"]) and b["max"] is None:
                    b["max"] = hi
                    break
            else:
                return None
        for pa, pb, v in across:            # medians (full box width), caps, mean lines
            for b in boxes:
                if not (pa <= b["c"] <= pb and b["p0"] - 1e-9 <= pa and pb <= b["p1"] + 1e-9):
                    continue
                inside = b["q1"] <= v <= b["q3"]
                full = close(pa, b["p0"]) and close(pb, b["p1"])
                if inside and full and b["median"] is None:
                    b["median"] = v
                elif (b["min"] is not None and close(v, b["min"])) or \
                        (b["max"] is not None and close(v, b["max"])) or not inside:
                    if v <= b["q1"]:
                        b.setdefault("cap_min", v)
                    else:
                        b.setdefault("cap_max", v)
                elif b["median"] is None:
                    b["median"] = v         # notched boxes draw a narrower median
                break
            else:
                return None
        for _, xy in markers:               # fliers (and mean markers inside the box)
            for pt in xy:
                p, v = pv(pt)
                owner = min(boxes, key=lambda b: abs(b["c"] - p))
                if abs(owner["c"] - p) > (owner["p1"] - owner["p0"]):
                    return None
                if owner["q1"] <= v <= owner["q3"]:
                    continue
                owner["outliers"].append(v)
        if any(b["median"] is None for b in boxes):
            return None
        return boxes

    boxes = fit(True)
    vertical = True
    if boxes is None:
        boxes, vertical = fit(False), False
    if boxes is None:
        return None
    boxes.sort(key=lambda b: b["c"])
    exact, near, fallback = _position_labeler(ax.xaxis if vertical else ax.yaxis)
    elements = []
    for b in boxes:
        label = exact(b["c"])
        if label is None:
            label = fallback(b["c"])
        lo = b["min"] if b["min"] is not None else b.get("cap_min", b["q1"])
        hi = b["max"] if b["max"] is not None else b.get("cap_max", b["q3"])
        elements.append({"label": label, "min": _num(lo), "first_quartile": _num(b["q1"]),
                         "median": _num(b["median"]), "third_quartile": _num(b["q3"]),
                         "max": _num(hi), "outliers": [_num(o) for o in b["outliers"]]})
    chart = {"type": "box_and_whisker", "title": _axes_title(ax)}
    chart.update(_labels_2d(ax, swap=not vertical))
    chart["elements"] = elements
    return chart


# ----- lines, scatter, pie, unknown ----------------------------------------------------------

def _point_chart(ax, kind, series):
    chart = {"type": kind, "title": _axes_title(ax)}
    chart.update(_labels_2d(ax))
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        ticks, labels = _ticks(axis)
        chart[f"{name}_ticks"] = ticks
        chart[f"{name}_tick_labels"] = labels
        chart[f"{name}_scale"] = _axis_scale(axis)
    chart["elements"] = series
    return chart


def _line_series(lines):
    return [{"label": _series_label(l, "Line", i), "points": _line_points(l)}
            for i, l in enumerate(lines[:MAX_SERIES])]


def _scatter_series(ax, colls):
    return [{"label": _series_label(c, "Series", i), "points": _collection_points(ax, c)}
            for i, c in enumerate(colls[:MAX_SERIES])]


def _pie_chart(ax, wedges):
    elements = []
    for w in wedges[:MAX_SERIES * 20]:
        label = w.get_label()
        if not isinstance(label, str) or label.startswith("_"):
            label = ""
        elements.append({"label": label, "angle": _round(abs(float(w.theta2) - float(w.theta1)), 6),
                         "radius": _num(w.r)})
    return {"type": "pie", "title": _axes_title(ax), "elements": elements}


def _unknown_chart(ax, series=None):
    chart = {"type": "unknown", "title": _axes_title(ax)}
    if getattr(ax, "name", "") == "rectilinear":
        chart.update(_labels_2d(ax))
    chart["elements"] = series or []
    return chart


def _is_scatter(ax, coll, mcoll):
    """A PathCollection of markers placed at data offsets (what Axes.scatter makes), not the
    data-coordinate paths of a contour set."""
    if mcoll is None or type(coll) is not mcoll.PathCollection:
        return False
    try:
        return coll.get_offset_transform().contains_branch(ax.transData)
    except Exception:
        return False


def axes_chart(ax):
    """The chart dict of one Axes."""
    if getattr(ax, "name", "rectilinear") != "rectilinear":
        return _unknown_chart(ax)           # polar, 3-D, geographic projections
    lines, colls, patches, extra, mcoll = _collect(ax)
    mpatches = sys.modules.get("matplotlib.patches")
    mcont = sys.modules.get("matplotlib.container")
    eb_parts = _errorbar_parts(ax)
    lines = [l for l in lines if id(l) not in eb_parts]
    colls = [c for c in colls if id(c) not in eb_parts]

    if extra:
        return _unknown_chart(ax)

    # Pie: only wedges.
    if patches and mpatches is not None and not lines and not colls and \
            all(isinstance(p, mpatches.Wedge) for p in patches):
        return _pie_chart(ax, patches)

    # Bars: every patch is a rectangle of a BarContainer.
    bar_containers = [c for c in ax.containers
                      if mcont is not None and isinstance(c, mcont.BarContainer) and len(c.patches)]
    if patches and bar_containers and not lines and not colls:
        in_bars = {id(p) for c in bar_containers for p in c.patches}
        if all(id(p) in in_bars for p in patches):
            return _bar_chart(ax, bar_containers)

    # Box and whisker.
    if lines and not colls and (not patches or mpatches is not None):
        chart = _box_chart(ax, lines, patches)
        if chart is not None:
            return chart

    scatters = [c for c in colls if _is_scatter(ax, c, mcoll)]
    fills = [c for c in colls if mcoll is not None and isinstance(c, mcoll.PolyCollection)]
    others = [c for c in colls if c not in scatters and c not in fills]

    if lines and not patches and not scatters and not others:
        return _point_chart(ax, "line", _line_series(lines))
    if scatters and not lines and not patches and not fills and not others:
        return _point_chart(ax, "scatter", _scatter_series(ax, scatters))
    # Mixed or unrecognized: say what can be said.
    series = []
    if not patches:
        series = (_line_series(lines) + _scatter_series(ax, scatters))[:MAX_SERIES]
    return _unknown_chart(ax, series)


def _content_axes(fig):
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or hasattr(ax, "_colorbar"):
            continue
        if not ax.axison and not ax.has_data() and not ax.texts:
            continue                        # a blank, switched-off subplot
        out.append(ax)
    return out


def figure_chart(fig):
    """The e2b/chart dict of a figure, or None when it has no axes."""
    axes = _content_axes(fig)
    if not axes:
        return None
    if len(axes) == 1:
        chart = axes_chart(axes[0])
        if chart.get("title") is None:
            chart["title"] = _fig_title(fig)
        return chart
    return {"type": "superchart", "title": _fig_title(fig),
            "elements": [_safe_axes_chart(ax) for ax in axes[:MAX_AXES]]}


def _safe_axes_chart(ax):
    try:
        return axes_chart(ax)
    except Exception:
        _record_error()
        return {"type": "unknown", "title": None, "elements": []}


def _format_figure(obj):
    mfig = sys.modules.get("matplotlib.figure")
    if mfig is None or not isinstance(obj, mfig.Figure):
        return None
    return figure_chart(obj)


# ---------------------------------------------------------------------------------------------
# IPython integration
# ---------------------------------------------------------------------------------------------

def _make_formatter_class():
    from IPython.core.formatters import BaseFormatter
    from traitlets import Unicode

    class HutchFormatter(BaseFormatter):
        """A formatter for one hutch MIME type. It looks at the object's type itself (so
        IPython's per-type registries, which `%matplotlib` rewrites, cannot remove it), never
        raises, and returns JSON-safe dicts, optionally with metadata."""
        format_type = Unicode("e2b/data")
        _return_type = (dict, list)

        def __init__(self, func=None, **kw):
            super().__init__(**kw)
            self._hutch_func = func

        def __call__(self, obj):
            if not self.enabled:
                return None
            # User registrations (for_type) keep working and win.
            try:
                printer = self.lookup(obj)
            except Exception:
                printer = None
            try:
                if printer is not None:
                    return printer(obj)
                return self._hutch_func(obj)
            except Exception:
                _record_error()
                return None

    return HutchFormatter


_state = {}

# Exact builtin types whose results IPython shows as text/plain alone unless a formatter has a
# printer registered for the type: instances of these types cannot carry a _repr_*_ method.
_PLAIN_TYPES = {t: (t.__mro__, tuple((c.__module__, c.__name__) for c in t.__mro__))
                for t in (int, float, bool, str, complex, bytes)}
# The stock classes and methods _plain_formatter checks for, set by _enable_plain_format().
_stock = {}


def _enable_plain_format(ip, hutch_cls):
    from IPython.core import formatters as f
    from IPython.core.displayhook import DisplayHook
    if type(ip.displayhook).compute_format_data is not DisplayHook.compute_format_data:
        return
    _stock["display_formatter"] = f.DisplayFormatter
    _stock["format"] = f.DisplayFormatter.format
    _stock["plain"] = f.PlainTextFormatter
    # Formatters that, for an object with no _repr_*_ method, return something only from a
    # registered printer (hutch's own also call their function, which returns None for these).
    _stock["lookup_only"] = frozenset((
        f.HTMLFormatter, f.MarkdownFormatter, f.SVGFormatter, f.PNGFormatter, f.PDFFormatter,
        f.JPEGFormatter, f.LatexFormatter, f.JSONFormatter, f.JavascriptFormatter,
        f.IPythonDisplayFormatter, f.MimeBundleFormatter))
    _stock["hutch"] = hutch_cls


def _no_printer(fmt, obj, mro, keys):
    """Whether the formatter `fmt` returns nothing for `obj` (whose type's MRO is `mro`, its
    (module, name) keys `keys`): a stock formatter, and no printer for obj or its types."""
    cls = type(fmt)
    if cls is not _stock["hutch"]:
        if cls not in _stock["lookup_only"] or hasattr(mro[0], fmt.print_method):
            return False
    if id(obj) in fmt.singleton_printers:
        return False
    printers = fmt.type_printers
    for c in mro:
        if c in printers:
            return False
    deferred = fmt.deferred_printers
    if deferred:
        for k in keys:
            if k in deferred:
                return False
    return True


def _plain_formatter(df, obj):
    """The text/plain formatter when DisplayFormatter.format(obj) would return that format
    alone (obj of a builtin scalar type, every formatter stock, none with a printer for it);
    otherwise None. Running only that formatter skips IPython's walk over a dozen others: the
    displayhook's formatting of `2` takes 0.04 ms instead of 0.18 ms on the development VM."""
    types = _PLAIN_TYPES.get(type(obj))
    if types is None or not _stock:
        return None
    if type(df) is not _stock["display_formatter"] or type(df).format is not _stock["format"] \
            or "format" in df.__dict__:
        return None
    mro, keys = types
    if not (_no_printer(df.ipython_display_formatter, obj, mro, keys)
            and _no_printer(df.mimebundle_formatter, obj, mro, keys)):
        return None
    plain = None
    for format_type, fmt in df.formatters.items():
        if type(fmt) is _stock["plain"] and format_type == "text/plain" and plain is None:
            plain = fmt
        elif not _no_printer(fmt, obj, mro, keys):
            return None
    return plain


def _format_plain(plain, obj):
    """What DisplayFormatter.format's loop makes of the text/plain formatter's answer."""
    data = plain(obj)
    md = None
    if isinstance(data, tuple) and len(data) == 2:
        data, md = data
    format_dict, md_dict = {}, {}
    if data is not None:
        format_dict["text/plain"] = data
    if md is not None:
        md_dict["text/plain"] = md
    return format_dict, md_dict


def _note_main_result(result):
    """The displayhook is about to show `result` as the execute_result. For a figure that the
    inline backend would show again at the end of the cell, remember it so that the end-of-cell
    flush skips it (otherwise the same figure comes out twice)."""
    mfig = sys.modules.get("matplotlib.figure")
    if mfig is not None and isinstance(result, mfig.Figure):
        _state.setdefault("shown", []).append(result)


def _pre_flush():
    """post_execute callback, run before matplotlib-inline's flush_figures: figures already
    shown as this cell's execute_result are not shown again by the flush."""
    shown = _state.pop("shown", None)
    if not shown:
        return
    try:
        bi = sys.modules.get("matplotlib_inline.backend_inline")
        helpers = sys.modules.get("matplotlib._pylab_helpers")
        if bi is None or helpers is None:
            return
        show = bi.show

        def was_shown(f):
            return any(f is s for s in shown)
        show._to_draw = [f for f in show._to_draw if not was_shown(f)]
        if not show._draw_called:
            return
        if bi.InlineBackend.instance().close_figures:
            # The flush shows every open figure, then closes them all: close the ones already
            # shown now, without showing them again.
            plt = sys.modules.get("matplotlib.pyplot")
            for m in list(helpers.Gcf.get_all_fig_managers()):
                if was_shown(m.canvas.figure) and plt is not None:
                    plt.close(m.canvas.figure)
            if not helpers.Gcf.get_all_fig_managers():
                show._draw_called = False
        elif not show._to_draw:
            show._draw_called = False
    except Exception:
        _record_error()


def _ensure_inline_backend(ip):
    """`%matplotlib inline` semantics: figures display after each cell and on plt.show().
    An explicit non-default backend (MPLBACKEND other than agg) is left alone."""
    current = os.environ.get("MPLBACKEND", "")
    if current and current.lower() not in ("agg", INLINE_BACKEND):
        return
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return      # importing pyplot later reads MPLBACKEND and sets up inline support itself
    try:
        if "matplotlib.pyplot" not in sys.modules:
            mpl.use(INLINE_BACKEND)
        elif mpl.get_backend() != INLINE_BACKEND or not _inline_configured(ip):
            # The second case: pyplot and the backend were imported before this shell existed
            # (a kernel forked from hutch's kernel fork server), so the backend's import-time
            # hook found no shell to configure.
            ip.run_line_magic("matplotlib", "inline")
    except Exception:
        _record_error()


def _inline_configured(ip):
    """Whether the inline backend's figure formatters are installed in this shell."""
    mfig = sys.modules.get("matplotlib.figure")
    png = ip.display_formatter.formatters.get("image/png")
    return mfig is not None and png is not None and mfig.Figure in png.type_printers


def register(ip=None):
    """Installs the e2b/data and e2b/chart formatters in the running IPython shell and turns on
    inline matplotlib. Returns True when installed (or already installed), False when there is
    no IPython shell. Safe to call more than once."""
    if ip is None:
        try:
            from IPython import get_ipython
            ip = get_ipython()
        except Exception:
            ip = None
    if ip is None:
        return False
    formatters = ip.display_formatter.formatters
    if not getattr(ip, "_hutch_display_registered", False):
        cls = _make_formatter_class()
        formatters["e2b/data"] = cls(func=_format_dataframe, format_type="e2b/data",
                                     parent=ip.display_formatter)
        formatters["e2b/chart"] = cls(func=_format_figure, format_type="e2b/chart",
                                      parent=ip.display_formatter)
        dh = ip.displayhook
        orig = dh.compute_format_data
        try:
            _enable_plain_format(ip, cls)
        except Exception:
            _record_error()

        def compute_format_data(result):
            try:
                _note_main_result(result)
            except Exception:
                _record_error()
            try:
                plain = _plain_formatter(dh.shell.display_formatter, result)
            except Exception:
                _record_error()
                plain = None
            if plain is not None:
                return _format_plain(plain, result)
            return orig(result)
        dh.compute_format_data = compute_format_data
        cbs = ip.events.callbacks.setdefault("post_execute", [])
        if _pre_flush not in cbs:
            cbs.insert(0, _pre_flush)
        ip._hutch_display_registered = True
    _ensure_inline_backend(ip)
    return True
