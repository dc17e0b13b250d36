// Rich output of the code-interpreter-v1 template through the official @e2b/code-interpreter SDK
// and a real `hutch serve`: display data (HTML, Markdown, images), pandas DataFrames as `data`,
// and matplotlib figures as png + `chart` (interpd's hutch_display, e2b-compat §4.3).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from '@e2b/code-interpreter';
import { startHutch } from './lib/hutch.mjs';

let hutch;
let sbx;

before(async () => {
  hutch = await startHutch();
  sbx = await Sandbox.create(hutch.opts);
  await sbx.runCode('import matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd');
});

after(async () => {
  try {
    if (sbx) await sbx.kill();
  } finally {
    const { code, leftovers } = await hutch.stop();
    assert.equal(code, 0, hutch.log());
    assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
  }
});

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function assertPng(b64) {
  assert.equal(typeof b64, 'string');
  const bytes = Buffer.from(b64, 'base64');
  assert.ok(bytes.subarray(0, 8).equals(PNG_MAGIC), 'a PNG');
  assert.ok(bytes.length > 100);
}

// Runs a plot and returns its one result, which must carry a png and a chart.
async function chartOf(code) {
  const r = await sbx.runCode(code);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.results.length, 1, `one display per figure: ${JSON.stringify(r.results.map((x) => x.formats()))}`);
  const [res] = r.results;
  assertPng(res.png);
  assert.ok(res.chart, 'a chart');
  return res;
}

const close = (a, b, eps = 1e-6) => Math.abs(a - b) <= eps;

test('display data: HTML and Markdown results, in the order displayed, and a main result', async () => {
  const r = await sbx.runCode(
    'from IPython.display import display, HTML, Markdown\n' +
      'display(HTML("<h1>Title</h1>"))\n' +
      'display(Markdown("**bold** text"))\n' +
      'HTML("<p>last</p>")'
  );
  assert.equal(r.error, undefined);
  assert.equal(r.results.length, 3);
  assert.equal(r.results[0].html, '<h1>Title</h1>');
  assert.equal(r.results[0].isMainResult, false);
  assert.ok(r.results[0].formats().includes('html'));
  assert.equal(r.results[1].markdown, '**bold** text');
  assert.equal(r.results[1].isMainResult, false);
  assert.deepEqual(r.results[1].formats(), ['markdown']);
  assert.equal(r.results[2].html, '<p>last</p>');
  assert.equal(r.results[2].isMainResult, true);
  // The text/plain beside them is the repr.
  assert.match(r.results[2].text, /IPython\.core\.display\.HTML/);
});

test('display data: JSON, LaTeX, SVG and JavaScript', async () => {
  const r = await sbx.runCode(
    'from IPython.display import display, JSON, Latex, SVG, Javascript\n' +
      'display(JSON({"a": [1, 2], "b": {"c": None}}))\n' +
      'display(Latex(r"$\\alpha^2$"))\n' +
      'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1"/></svg>\'))\n' +
      'display(Javascript("console.log(1)"))'
  );
  assert.equal(r.error, undefined);
  assert.equal(r.results.length, 4);
  assert.deepEqual(r.results[0].json, { a: [1, 2], b: { c: null } });
  assert.equal(r.results[1].latex, '$\\alpha^2$');
  assert.match(r.results[2].svg, /^<svg[^>]*><rect width="1" height="1"\/><\/svg>$/);
  assert.equal(r.results[3].javascript, 'console.log(1)');
});

test('images: a PNG displayed with IPython.display.Image', async () => {
  const r = await sbx.runCode(
    'import io\nfrom IPython.display import Image, display\n' +
      'fig = plt.figure(figsize=(1, 1))\nbuf = io.BytesIO()\nfig.savefig(buf, format="png")\nplt.close(fig)\n' +
      'png_bytes = buf.getvalue()\ndisplay(Image(png_bytes))\nlen(png_bytes)'
  );
  assert.equal(r.error, undefined);
  assert.equal(r.results.length, 2);
  assertPng(r.results[0].png);
  assert.equal(r.results[0].isMainResult, false);
  assert.equal(Buffer.from(r.results[0].png, 'base64').length, Number(r.text));
  assert.equal(r.results[0].chart, undefined);
  // A JPEG too.
  const j = await sbx.runCode(
    'fig = plt.figure(figsize=(1, 1))\nbuf = io.BytesIO()\nfig.savefig(buf, format="jpeg")\nplt.close(fig)\n' +
      'Image(buf.getvalue(), format="jpeg")'
  );
  assert.equal(j.error, undefined);
  assert.ok(Buffer.from(j.results[0].jpeg, 'base64').subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff])));
});

test('a DataFrame becomes data (columns of values) beside its html and text', async () => {
  const r = await sbx.runCode(
    'df = pd.DataFrame({"name": ["a", "b", "c"], "n": [1, 2, 3], "x": [0.5, float("nan"), 2.25]})\ndf'
  );
  assert.equal(r.error, undefined);
  assert.equal(r.results.length, 1);
  const [res] = r.results;
  assert.equal(res.isMainResult, true);
  assert.deepEqual(res.data, { name: ['a', 'b', 'c'], n: [1, 2, 3], x: [0.5, null, 2.25] });
  assert.match(res.html, /<table/);
  assert.match(res.text, /name\s+n\s+x/);
  assert.ok(res.formats().includes('data'));
  // display() of a DataFrame gives the same, not as the main result.
  const d = await sbx.runCode('display(df[["n"]] * 2)');
  assert.equal(d.results.length, 1);
  assert.equal(d.results[0].isMainResult, false);
  assert.deepEqual(d.results[0].data, { n: [2, 4, 6] });
});

test('chart: line', async () => {
  const res = await chartOf(`
x = [0, 1, 2, 3]
plt.figure()
plt.plot(x, [0, 1, 4, 9], label="squares")
plt.plot(x, [0, 1, 8, 27], label="cubes")
plt.title("Powers")
plt.xlabel("Time (s)")
plt.ylabel("Value [m]")
plt.legend()
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'line');
  assert.equal(c.title, 'Powers');
  assert.equal(c.x_label, 'Time (s)');
  assert.equal(c.y_label, 'Value [m]');
  assert.equal(c.x_unit, 's');
  assert.equal(c.y_unit, 'm');
  assert.equal(c.x_scale, 'linear');
  assert.equal(c.y_scale, 'linear');
  assert.ok(Array.isArray(c.x_ticks) && c.x_ticks.length > 0);
  assert.equal(c.x_ticks.length, c.x_tick_labels.length);
  assert.deepEqual(c.elements.map((e) => e.label), ['squares', 'cubes']);
  assert.deepEqual(c.elements[0].points, [[0, 0], [1, 1], [2, 4], [3, 9]]);
  assert.deepEqual(c.elements[1].points[3], [3, 27]);
});

test('chart: scatter', async () => {
  const res = await chartOf(`
plt.figure()
plt.scatter([1, 2, 3], [4, 5, 6], label="A")
plt.scatter([1.5, 2.5], [7, 8], label="B")
plt.title("Scatter")
plt.xlabel("x")
plt.ylabel("y")
plt.legend()
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'scatter');
  assert.equal(c.title, 'Scatter');
  assert.equal(c.x_label, 'x');
  assert.equal(c.y_label, 'y');
  assert.deepEqual(c.elements.map((e) => e.label), ['A', 'B']);
  assert.deepEqual(c.elements[0].points, [[1, 4], [2, 5], [3, 6]]);
  assert.deepEqual(c.elements[1].points, [[1.5, 7], [2.5, 8]]);
});

test('chart: bar', async () => {
  const res = await chartOf(`
plt.figure()
plt.bar(["apples", "pears", "plums"], [10, 20, 5], label="2024")
plt.title("Fruit")
plt.xlabel("Kind")
plt.ylabel("Count")
plt.legend()
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'bar');
  assert.equal(c.title, 'Fruit');
  assert.equal(c.x_label, 'Kind');
  assert.equal(c.y_label, 'Count');
  assert.deepEqual(
    c.elements.map((e) => [e.label, e.value, e.group]),
    [
      ['apples', 10, '2024'],
      ['pears', 20, '2024'],
      ['plums', 5, '2024'],
    ]
  );
});

test('chart: pie', async () => {
  const res = await chartOf(`
plt.figure()
plt.pie([1, 1, 2], labels=["one", "two", "half"])
plt.title("Shares")
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'pie');
  assert.equal(c.title, 'Shares');
  assert.deepEqual(c.elements.map((e) => e.label), ['one', 'two', 'half']);
  const angles = c.elements.map((e) => e.angle);
  assert.ok(close(angles[0], 90, 1e-3) && close(angles[1], 90, 1e-3) && close(angles[2], 180, 1e-3), JSON.stringify(angles));
  for (const e of c.elements) assert.ok(close(e.radius, 1), JSON.stringify(e));
  assert.equal(c.x_label, undefined);
});

test('chart: box and whisker', async () => {
  const res = await chartOf(`
plt.figure()
plt.boxplot([[1, 2, 3, 4, 5], [2, 4, 6, 8, 10, 40]], labels=["low", "high"])
plt.title("Spread")
plt.xlabel("Group")
plt.ylabel("Value")
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'box_and_whisker');
  assert.equal(c.title, 'Spread');
  assert.equal(c.x_label, 'Group');
  assert.equal(c.y_label, 'Value');
  assert.equal(c.elements.length, 2);
  const [low, high] = c.elements;
  assert.deepEqual(
    [low.label, low.min, low.first_quartile, low.median, low.third_quartile, low.max, low.outliers],
    ['low', 1, 2, 3, 4, 5, []]
  );
  // numpy's quartiles of [2, 4, 6, 8, 10, 40]: 4.5, 7, 9.5; 40 lies beyond 9.5 + 1.5 * 5.
  assert.equal(high.label, 'high');
  assert.equal(high.median, 7);
  assert.equal(high.first_quartile, 4.5);
  assert.equal(high.third_quartile, 9.5);
  assert.equal(high.min, 2);
  assert.equal(high.max, 10);
  assert.deepEqual(high.outliers, [40]);
});

test('chart: a figure with several subplots is a superchart', async () => {
  const res = await chartOf(`
fig, (a, b) = plt.subplots(1, 2)
fig.suptitle("Both")
a.plot([1, 2, 3], [1, 4, 9], label="sq")
a.set_title("Line part")
b.bar(["u", "v"], [3, 4])
b.set_title("Bar part")
plt.show()
`);
  const c = res.chart;
  assert.equal(c.type, 'superchart');
  assert.equal(c.title, 'Both');
  assert.equal(c.elements.length, 2);
  assert.equal(c.elements[0].type, 'line');
  assert.equal(c.elements[0].title, 'Line part');
  assert.deepEqual(c.elements[0].elements[0].points, [[1, 1], [2, 4], [3, 9]]);
  assert.equal(c.elements[1].type, 'bar');
  assert.equal(c.elements[1].title, 'Bar part');
  assert.deepEqual(
    c.elements[1].elements.map((e) => [e.label, e.value]),
    [
      ['u', 3],
      ['v', 4],
    ]
  );
});

test('a figure left open at the end of a cell is shown once; a figure as the last expression too', async () => {
  const open = await sbx.runCode('plt.figure()\nplt.plot([1, 2], [3, 4])\nplt.title("Open")');
  assert.equal(open.error, undefined);
  const charts = open.results.filter((r) => r.chart);
  assert.equal(charts.length, 1, JSON.stringify(open.results.map((r) => r.formats())));
  assert.equal(charts[0].chart.title, 'Open');
  assertPng(charts[0].png);
  const last = await sbx.runCode('fig = plt.figure()\nplt.plot([0, 1], [1, 0])\nplt.title("Last")\nfig');
  const withChart = last.results.filter((r) => r.chart);
  assert.equal(withChart.length, 1, JSON.stringify(last.results.map((r) => [r.isMainResult, r.formats()])));
  assert.equal(withChart[0].isMainResult, true);
  assert.equal(withChart[0].chart.type, 'line');
  // Nothing stays open to be shown by the next cell.
  assert.deepEqual((await sbx.runCode('1')).results.map((r) => r.text), ['1']);
});
