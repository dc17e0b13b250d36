// code-interpreter-v1 sandboxes from the warm pool (`hutch serve --pool-memory-mb`), through the
// official @e2b/code-interpreter SDK: a pooled sandbox's kernel was started (and pandas
// preloaded) before the create, so what the create brings (env vars, a new access token) must
// still reach it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from '@e2b/code-interpreter';
import { startHutch } from './lib/hutch.mjs';

let hutch;

before(async () => {
  hutch = await startHutch(['--pool-memory-mb', '1024']);
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

async function metric(name) {
  const text = await (await fetch(`${hutch.url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

// The pool fills in the background after a create made demand; wait (bounded) for a sandbox.
async function waitForPooled() {
  const deadline = Date.now() + 120_000;
  while ((await metric('hutch_warm_pool_sandboxes')) < 1) {
    assert.ok(Date.now() < deadline, 'the pool did not fill within 120 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the second and third creates come from the pool, and their kernels work', async () => {
  const made = [];
  try {
    assert.equal(await metric('hutch_warm_pool_hits_total'), 0);
    made.push(await Sandbox.create(hutch.opts)); // a cold create: it makes the demand
    assert.equal(await metric('hutch_warm_pool_hits_total'), 0);
    assert.equal((await made[0].runCode('1+1')).text, '2');

    for (const [i, envs] of [
      [1, { POOLED: 'second' }],
      [2, { POOLED: 'third' }],
    ]) {
      await waitForPooled();
      const hits = await metric('hutch_warm_pool_hits_total');
      const s = await Sandbox.create({ ...hutch.opts, envs });
      made.push(s);
      assert.equal(await metric('hutch_warm_pool_hits_total'), hits + 1, `create ${i + 1} came from the pool`);
      assert.equal((await s.getInfo()).templateId, 'code-interpreter-v1');
      // The first runCode in the pooled sandbox: pandas (preloaded before the hand-over).
      const r = await s.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})["a"].sum()');
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      assert.equal(r.text, '3');
      // The create's env vars reach the kernel that was started before them.
      assert.equal((await s.runCode('import os; os.environ.get("POOLED")')).text, envs.POOLED);
      // And a chart, the whole display path.
      const c = await s.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()');
      assert.equal(c.results[0]?.chart?.type, 'line', JSON.stringify(c));
    }
    assert.equal(new Set(made.map((s) => s.sandboxId)).size, 3);
    // The pooled sandboxes are their own: state set in one is not in another.
    await made[1].runCode('mine = 1');
    assert.equal((await made[2].runCode('mine')).error?.name, 'NameError');
  } finally {
    for (const s of made) await s.kill();
  }
});
