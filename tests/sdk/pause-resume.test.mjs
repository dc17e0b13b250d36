// Pause and resume through the official e2b SDK against a real `hutch serve` (e2b-compat 2.3,
// 2.6): memory mode (processes go on), filesystem mode (processes end, files stay, the
// template's start command runs again), a restart of the server in between (graceful and
// kill -9), pause at the timeout, and a resume whose saved layer is gone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Sandbox, Template, waitForFile } from 'e2b';
import { startHutch } from './lib/hutch.mjs';

let hutch;

before(async () => {
  hutch = await startHutch();
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

// hutch's GET /sandboxes/{id}, raw: pauseMode is hutch's own field.
async function detail(h, id) {
  const r = await fetch(`${h.url}/sandboxes/${id}`, { headers: { 'X-API-KEY': h.apiKey } });
  return { status: r.status, body: await r.json() };
}

async function connectRaw(h, id) {
  const r = await fetch(`${h.url}/v2/sandboxes/${id}/connect`, {
    method: 'POST',
    headers: { 'X-API-KEY': h.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ timeout: 120 }),
  });
  return { status: r.status, body: await r.json() };
}

async function waitUntil(what, fn, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A template whose start command leaves a trace of every start: a line in starts.log (kept on
// disk) and the ready marker (removed by the test before each pause), then keeps running.
const STARTER = 'date +%s%N >> /home/user/starts.log; touch /home/user/ready; exec sleep 86400';
async function buildStarter(h, name) {
  const t = Template().fromTemplate('base').runCmd('echo template > /home/user/from-template').setStartCmd(STARTER, waitForFile('/home/user/ready'));
  await Template.build(t, name, { ...h.opts });
}

const lines = (s) => s.split('\n').filter(Boolean);

test('memory mode: 3 pause/resume cycles, files written between them, a background process lives on', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, timeoutMs: 120_000 });
  try {
    const bg = await sbx.commands.run('while true; do date +%s%N >> /tmp/ticks; sleep 0.1; done', { background: true });
    const pid = bg.pid;
    for (let i = 1; i <= 3; i++) {
      await sbx.files.write(`/home/user/cycle-${i}.txt`, `written before pause ${i}`);
      assert.equal(await sbx.pause(), true);
      assert.equal(await sbx.pause(), false, 'a second pause reports "already paused"');
      const info = await Sandbox.getInfo(sbx.sandboxId, hutch.opts);
      assert.equal(info.state, 'paused');
      const d = await detail(hutch, sbx.sandboxId);
      assert.equal(d.body.state, 'paused');
      assert.equal(d.body.pauseMode, 'memory');
      assert.equal(await sbx.isRunning({ requestTimeoutMs: 5000 }), false);
      const listed = await Sandbox.list({ ...hutch.opts, query: { state: ['paused'] } }).nextItems();
      assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId]);

      if (i === 1) {
        // The wire: 201 when a paused sandbox was resumed, 200 when it ran already.
        assert.equal((await connectRaw(hutch, sbx.sandboxId)).status, 201);
        assert.equal((await connectRaw(hutch, sbx.sandboxId)).status, 200);
      } else if (i === 2) {
        await sbx.connect();
      } else {
        await Sandbox.connect(sbx.sandboxId, hutch.opts);
      }
      assert.equal((await sbx.getInfo()).state, 'running');
      for (let j = 1; j <= i; j++) assert.equal(await sbx.files.read(`/home/user/cycle-${j}.txt`), `written before pause ${j}`);
      const alive = await sbx.commands.run(`kill -0 ${pid} && echo alive; n=$(wc -l < /tmp/ticks); sleep 0.5; [ $(wc -l < /tmp/ticks) -gt $n ] && echo ticking`);
      assert.equal(alive.stdout, 'alive\nticking\n', `cycle ${i}`);
    }
    const list = await sbx.commands.list();
    assert.ok(list.some((p) => p.pid === pid), 'envd still knows the process');
  } finally {
    await sbx.kill();
  }
});

test('filesystem mode (keepMemory false): processes end, files stay, the start command runs again', async () => {
  await buildStarter(hutch, 'starter');
  const sbx = await Sandbox.create('starter', { ...hutch.opts, timeoutMs: 120_000 });
  try {
    assert.equal((await sbx.commands.run('cat from-template; wc -l < starts.log')).stdout, 'template\n1\n', 'one start at create (the build check left nothing)');
    for (let i = 1; i <= 3; i++) {
      await sbx.commands.run(`exec sleep 7777${i}`, { background: true });
      await sbx.files.write(`/home/user/fs-cycle-${i}.txt`, `cycle ${i}`);
      await sbx.commands.run('rm /home/user/ready; mkdir -p deep/er && echo nested > deep/er/f');
      assert.equal(await sbx.pause({ keepMemory: false }), true);
      const d = await detail(hutch, sbx.sandboxId);
      assert.equal(d.body.state, 'paused');
      assert.equal(d.body.pauseMode, 'filesystem');
      assert.equal((await Sandbox.getInfo(sbx.sandboxId, hutch.opts)).state, 'paused');
      assert.equal(await sbx.isRunning({ requestTimeoutMs: 5000 }), false);

      await sbx.connect();
      const r = await sbx.commands.run(
        `test -e ready && echo ready; wc -l < starts.log; cat deep/er/f; pgrep -f "^sleep 7777${i}$" || echo gone; pgrep -x sleep | wc -l`
      );
      assert.equal(r.stdout, `ready\n${i + 1}\nnested\ngone\n1\n`, `cycle ${i}`);
      for (let j = 1; j <= i; j++) assert.equal(await sbx.files.read(`/home/user/fs-cycle-${j}.txt`), `cycle ${j}`);
      const stamps = lines(await sbx.files.read('/home/user/starts.log')).map(BigInt);
      assert.deepEqual([...stamps].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), stamps, 'each start appended a later time');
    }
  } finally {
    await sbx.kill();
  }
});

test('--max-paused-in-memory 0: every pause is to the filesystem', async () => {
  const h = await startHutch(['--max-paused-in-memory', '0']);
  try {
    await buildStarter(h, 'starter0');
    const sbx = await Sandbox.create('starter0', { ...h.opts, timeoutMs: 120_000 });
    await sbx.commands.run('sleep 3600', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.commands.run('rm ready');
    assert.equal(await sbx.pause(), true);
    assert.equal((await detail(h, sbx.sandboxId)).body.pauseMode, 'filesystem');
    await sbx.connect();
    const r = await sbx.commands.run('cat kept.txt; echo; wc -l < starts.log; pgrep -f "^sleep 3600$" || echo gone');
    assert.equal(r.stdout, 'kept\n2\ngone\n');
    await sbx.kill();
  } finally {
    const { code, leftovers } = await h.stop();
    assert.equal(code, 0, h.log());
    assert.deepEqual(leftovers, []);
  }
});

test("connect with onResume 'reboot' starts a sandbox paused in memory again from its files", async () => {
  await buildStarter(hutch, 'rebooter');
  const sbx = await Sandbox.create('rebooter', { ...hutch.opts, timeoutMs: 120_000 });
  try {
    await sbx.commands.run('exec sleep 4242', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'kept over a reboot');
    await sbx.commands.run('rm ready');
    assert.equal(await sbx.pause(), true);
    assert.equal((await detail(hutch, sbx.sandboxId)).body.pauseMode, 'memory');
    const again = await Sandbox.connect(sbx.sandboxId, { ...hutch.opts, onResume: 'reboot' });
    const r = await again.commands.run('cat kept.txt; echo; wc -l < starts.log; test -e ready && echo ready; pgrep -fx "sleep 4242" || echo gone');
    assert.equal(r.stdout, 'kept over a reboot\n2\nready\ngone\n');
    // Connecting to a running sandbox with 'reboot' changes nothing.
    await Sandbox.connect(sbx.sandboxId, { ...hutch.opts, onResume: 'reboot' });
    assert.equal((await again.commands.run('wc -l < starts.log')).stdout, '2\n');
  } finally {
    await sbx.kill();
  }
});

test('a paused sandbox survives a restart of the server (graceful, then kill -9)', async () => {
  let h = await startHutch();
  let id;
  try {
    await buildStarter(h, 'survivor');
    const sbx = await Sandbox.create('survivor', { ...h.opts, timeoutMs: 300_000, metadata: { who: 'survivor' } });
    id = sbx.sandboxId;
    await sbx.files.write('/home/user/one.txt', 'before the first restart');
    await sbx.commands.run('rm ready; sleep 3600 >/dev/null 2>&1 &');
    assert.equal(await sbx.pause(), true, 'paused in memory');

    let r = await h.stop({ keepState: true });
    assert.equal(r.code, 0, h.log());
    h = await startHutch([], { stateDir: h.stateDir });

    let info = await Sandbox.getInfo(id, h.opts);
    assert.equal(info.state, 'paused');
    assert.deepEqual(info.metadata, { who: 'survivor' });
    assert.equal((await detail(h, id)).body.pauseMode, 'filesystem', 'memory is gone with the old server');
    let again = await Sandbox.connect(id, h.opts);
    assert.equal(await again.files.read('/home/user/one.txt'), 'before the first restart');
    assert.equal((await again.commands.run('wc -l < starts.log; test -e ready && echo ready')).stdout, '2\nready\n');
    await again.files.write('/home/user/two.txt', 'before the crash');
    await again.commands.run('rm ready');
    assert.equal(await again.pause(), true);

    r = await h.stop({ keepState: true, signal: 'SIGKILL' });
    assert.equal(r.code, null);
    h = await startHutch([], { stateDir: h.stateDir });

    info = await Sandbox.getInfo(id, h.opts);
    assert.equal(info.state, 'paused');
    again = await Sandbox.connect(id, h.opts);
    assert.equal(await again.files.read('/home/user/one.txt'), 'before the first restart');
    assert.equal(await again.files.read('/home/user/two.txt'), 'before the crash');
    assert.equal((await again.commands.run('wc -l < starts.log; cat from-template')).stdout, '3\ntemplate\n');
    assert.equal((await again.getInfo()).state, 'running');
    // A template built before the restarts still creates sandboxes.
    const fresh = await Sandbox.create('survivor', h.opts);
    assert.equal((await fresh.commands.run('wc -l < starts.log')).stdout, '1\n');
    await fresh.kill();
    assert.equal(await again.kill(), true);
  } finally {
    const { code, leftovers } = await h.stop();
    assert.equal(code, 0, h.log());
    assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
  }
});

test('lifecycle onTimeout pause: the sandbox pauses at its timeout and connect resumes it', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, timeoutMs: 3_000, lifecycle: { onTimeout: 'pause' } });
  try {
    assert.equal(await sbx.isRunning(), true);
    const info = await sbx.getInfo();
    assert.equal(info.lifecycle?.onTimeout, 'pause', JSON.stringify(info.lifecycle));
    await sbx.files.write('/home/user/auto.txt', 'paused by the timer');
    const bg = await sbx.commands.run('sleep 3600', { background: true });
    await waitUntil('the timeout pause', async () => (await Sandbox.getInfo(sbx.sandboxId, hutch.opts)).state === 'paused');
    assert.equal(await sbx.isRunning({ requestTimeoutMs: 5000 }), false);
    const again = await Sandbox.connect(sbx.sandboxId, { ...hutch.opts, timeoutMs: 60_000 });
    assert.equal(await again.files.read('/home/user/auto.txt'), 'paused by the timer');
    assert.equal((await again.commands.run(`kill -0 ${bg.pid} && echo alive`)).stdout, 'alive\n');
    const after = await again.getInfo();
    assert.equal(after.state, 'running');
    assert.ok(after.endAt.getTime() - Date.now() > 30_000, 'connect set a new end');
  } finally {
    await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

test('lifecycle onTimeout pause with keepMemory false pauses to the filesystem', async () => {
  // The wire (e2b-compat 2.6): autoPauseMemory false cannot go with autoResume.
  const bad = await fetch(`${hutch.url}/v2/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': hutch.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } }),
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, 400);

  const sbx = await Sandbox.create('base', {
    ...hutch.opts,
    timeoutMs: 3_000,
    lifecycle: { onTimeout: { action: 'pause', keepMemory: false } },
  });
  try {
    await sbx.files.write('/home/user/auto.txt', 'kept on disk');
    await sbx.commands.run('sleep 3600', { background: true });
    await waitUntil('the timeout pause', async () => (await Sandbox.getInfo(sbx.sandboxId, hutch.opts)).state === 'paused');
    assert.equal((await detail(hutch, sbx.sandboxId)).body.pauseMode, 'filesystem');
    const again = await Sandbox.connect(sbx.sandboxId, hutch.opts);
    assert.equal(await again.files.read('/home/user/auto.txt'), 'kept on disk');
    assert.equal((await again.commands.run('pgrep -fx "sleep 3600" || echo gone')).stdout, 'gone\n');
  } finally {
    await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

test('a resume whose saved layer is gone fails with a clear error; the server stays healthy', async (t) => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, timeoutMs: 120_000 });
  let killed = false;
  try {
    await sbx.files.write('/home/user/lost.txt', 'in the saved layer');
    assert.equal(await sbx.pause({ keepMemory: false }), true);
    const layers = path.join(hutch.stateDir, 'layers');
    const saved = fs.readdirSync(layers).filter((n) => n.includes(sbx.sandboxId));
    assert.ok(saved.length >= 1, `a saved layer of ${sbx.sandboxId} in ${fs.readdirSync(layers).join(' ')}`);
    for (const n of saved) fs.rmSync(path.join(layers, n), { recursive: true, force: true });

    await assert.rejects(Sandbox.connect(sbx.sandboxId, hutch.opts), (e) => {
      t.diagnostic(`${e.constructor.name}: ${e.message}`);
      assert.match(e.message, /cannot resume.*layer.*gone/i);
      assert.doesNotMatch(e.message, /^\s*$/);
      return true;
    });
    assert.equal((await fetch(`${hutch.url}/health`)).status, 200);
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, hutch.opts)).state, 'paused', 'still there, still paused');
    const other = await Sandbox.create('base', hutch.opts);
    assert.equal((await other.commands.run('echo ok')).stdout, 'ok\n');
    await other.kill();
    assert.equal(await Sandbox.kill(sbx.sandboxId, hutch.opts), true);
    killed = true;
  } finally {
    if (!killed) await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

// A pause or a snapshot writes its layer into <stateDir>/layers before the store records it; a
// layer collection at the end of another pause, a kill or a template delete must not take it
// for garbage meanwhile (once: pauses answering 404, sandboxes resuming with most of their
// files gone, "cannot resume: its layer ... is gone").
test('concurrent pauses and snapshots keep every sandbox\'s files', async () => {
  const write = 'mkdir -p d && for i in $(seq 1 200); do head -c 8192 /dev/urandom > d/$i; done; ls d | wc -l';
  const sbs = await Promise.all(Array.from({ length: 6 }, () => Sandbox.create('base', { ...hutch.opts, timeoutMs: 120_000 })));
  const snaps = [];
  try {
    for (const r of await Promise.all(sbs.map((s) => s.commands.run(write)))) assert.equal(r.stdout, '200\n');
    for (let round = 0; round < 2; round++) {
      const paused = await Promise.allSettled(sbs.map((s, i) => s.pause({ keepMemory: i % 2 === 0 })));
      assert.deepEqual(paused.map((r) => r.reason?.message ?? r.value), sbs.map(() => true), `round ${round}: pauses`);
      const resumed = await Promise.allSettled(sbs.map((s) => s.connect()));
      assert.deepEqual(resumed.map((r) => r.reason?.message ?? 'ok'), sbs.map(() => 'ok'), `round ${round}: resumes`);
      const counts = await Promise.all(sbs.map(async (s) => (await s.commands.run('ls d | wc -l')).stdout));
      assert.deepEqual(counts, sbs.map(() => '200\n'), `round ${round}: files`);
    }
    const mixed = await Promise.allSettled(sbs.map((s, i) => (i % 2 ? s.createSnapshot() : s.pause({ keepMemory: false }))));
    for (const r of mixed) if (r.value?.snapshotId) snaps.push(r.value.snapshotId);
    assert.deepEqual(mixed.map((r) => r.reason?.message ?? 'ok'), sbs.map(() => 'ok'), 'snapshots beside pauses');
    for (const id of snaps) {
      const n = await Sandbox.create(id, hutch.opts);
      try {
        assert.equal((await n.commands.run('ls d | wc -l')).stdout, '200\n');
      } finally {
        await n.kill();
      }
    }
    for (let i = 0; i < sbs.length; i += 2) {
      await sbs[i].connect();
      assert.equal((await sbs[i].commands.run('ls d | wc -l')).stdout, '200\n');
    }
  } finally {
    await Promise.all(sbs.map((s) => Sandbox.kill(s.sandboxId, hutch.opts)));
    for (const id of snaps) await Sandbox.deleteSnapshot(id, hutch.opts);
  }
});
