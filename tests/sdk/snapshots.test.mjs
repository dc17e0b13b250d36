// Snapshots and forks through the official e2b SDK against a real `hutch serve` (e2b-compat
// 2.3): createSnapshot, create from a snapshot's id and name, listSnapshots, deleteSnapshot,
// fork.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, Template, waitForFile, SandboxNotFoundError, NotFoundError } from 'e2b';
import { startHutch } from './lib/hutch.mjs';

let hutch;

before(async () => {
  hutch = await startHutch();
  // A template with settings of its own and a start command that counts its starts.
  const t = Template()
    .fromTemplate('base')
    .setEnvs({ FROM_TEMPLATE: 'yes' })
    .setWorkdir('/home/user/proj')
    .setStartCmd('date +%s%N >> /home/user/proj/starts.log; touch /home/user/proj/ready; exec sleep 86400', waitForFile('/home/user/proj/ready'));
  await Template.build(t, 'snapbase', hutch.opts);
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

async function allSnapshots(opts) {
  const pager = Sandbox.listSnapshots({ ...hutch.opts, ...opts });
  const out = [];
  while (pager.hasNext) out.push(...(await pager.nextItems()));
  return out;
}

const read = async (s, p) => (await s.commands.run(`cat ${p}`)).stdout;

test('createSnapshot, create from its id and name, listSnapshots, deleteSnapshot', async () => {
  const src = await Sandbox.create('snapbase', hutch.opts);
  const other = await Sandbox.create('base', hutch.opts);
  const made = [];
  try {
    await src.files.write('/home/user/proj/state.txt', 'v1');
    await src.commands.run('mkdir -p deep/er && echo nested > deep/er/f && rm ready');

    const snap = await src.createSnapshot({ name: 'snap-one' });
    assert.ok(snap.snapshotId, JSON.stringify(snap));
    assert.ok(snap.names.some((n) => /(^|\/)snap-one(:|$)/.test(n)), JSON.stringify(snap.names));

    // The source goes on running, with its own later changes.
    assert.equal((await src.getInfo()).state, 'running');
    await src.files.write('/home/user/proj/state.txt', 'v2');
    const snap2 = await Sandbox.createSnapshot(src.sandboxId, hutch.opts);
    assert.notEqual(snap2.snapshotId, snap.snapshotId);
    const otherSnap = await other.createSnapshot();

    const byId = await Sandbox.create(snap.snapshotId, hutch.opts);
    made.push(byId);
    const byName = await Sandbox.create('snap-one', hutch.opts);
    made.push(byName);
    const fromSecond = await Sandbox.create(snap2.snapshotId, hutch.opts);
    made.push(fromSecond);
    for (const s of [byId, byName]) {
      const r = await s.commands.run('cat state.txt; echo; cat deep/er/f; pwd; echo $FROM_TEMPLATE; wc -l < starts.log; test -e ready && echo ready');
      // The template's settings come along, and its start command ran again (a second line).
      assert.equal(r.stdout, 'v1\nnested\n/home/user/proj\nyes\n2\nready\n');
    }
    assert.equal(await read(fromSecond, 'state.txt'), 'v2');

    // Sandboxes from one snapshot are independent of each other and of the source.
    await byId.files.write('/home/user/proj/state.txt', 'changed in byId');
    assert.equal(await read(byName, 'state.txt'), 'v1');
    assert.equal(await read(src, 'state.txt'), 'v2');

    const ofSrc = (await allSnapshots({ sandboxId: src.sandboxId })).map((s) => s.snapshotId).sort();
    assert.deepEqual(ofSrc, [snap.snapshotId, snap2.snapshotId].sort());
    assert.deepEqual((await src.listSnapshots().nextItems()).map((s) => s.snapshotId).sort(), ofSrc);
    assert.deepEqual((await allSnapshots({ sandboxId: other.sandboxId })).map((s) => s.snapshotId), [otherSnap.snapshotId]);
    assert.deepEqual((await allSnapshots({ name: 'snap-one' })).map((s) => s.snapshotId), [snap.snapshotId]);
    const everything = (await allSnapshots({})).map((s) => s.snapshotId);
    for (const id of [snap.snapshotId, snap2.snapshotId, otherSnap.snapshotId]) assert.ok(everything.includes(id));
    assert.ok(!everything.includes('snapbase'), 'a template is not a snapshot');
    const paged = Sandbox.listSnapshots({ ...hutch.opts, sandboxId: src.sandboxId, limit: 1 });
    assert.equal((await paged.nextItems()).length, 1);
    assert.equal(paged.hasNext, true);
    assert.equal((await paged.nextItems()).length, 1);
    assert.equal(paged.hasNext, false);

    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, hutch.opts), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, hutch.opts), false);
    await assert.rejects(Sandbox.create(snap.snapshotId, hutch.opts));
    await assert.rejects(Sandbox.create('snap-one', hutch.opts));
    assert.deepEqual((await allSnapshots({ sandboxId: src.sandboxId })).map((s) => s.snapshotId), [snap2.snapshotId]);
    // What was created from it keeps working, files and all.
    for (const s of [byId, byName]) {
      await s.files.write('/home/user/proj/after.txt', 'after the delete');
      assert.equal(await read(s, 'after.txt'), 'after the delete');
      assert.equal(await read(s, 'deep/er/f'), 'nested\n');
    }
    // Its name is free for a new snapshot.
    const again = await src.createSnapshot({ name: 'snap-one' });
    const fromAgain = await Sandbox.create('snap-one', hutch.opts);
    made.push(fromAgain);
    assert.equal(await read(fromAgain, 'state.txt'), 'v2');
    assert.equal(await Sandbox.deleteSnapshot(again.snapshotId, hutch.opts), true);
    assert.equal(await Sandbox.deleteSnapshot(snap2.snapshotId, hutch.opts), true);
    assert.equal(await Sandbox.deleteSnapshot(otherSnap.snapshotId, hutch.opts), true);
  } finally {
    for (const s of [src, other, ...made]) await s.kill();
  }
  assert.deepEqual(await allSnapshots({}), []);
});

test('fork with count 3: each fork has the files, and they are independent', async () => {
  const src = await Sandbox.create('snapbase', { ...hutch.opts, envs: { PER_SANDBOX: 'kept' } });
  let forks = [];
  try {
    await src.files.write('/home/user/proj/shared.txt', 'before the fork');
    await src.commands.run('rm ready');
    forks = await Sandbox.fork(src.sandboxId, { ...hutch.opts, count: 3, timeoutMs: 120_000 });
    assert.equal(forks.length, 3);
    for (const f of forks) assert.ok(f instanceof Sandbox, `a fork failed: ${f?.message}`);
    const ids = new Set([src.sandboxId, ...forks.map((f) => f.sandboxId)]);
    assert.equal(ids.size, 4, 'each fork is a sandbox of its own');

    assert.equal((await src.getInfo()).state, 'running', 'the source runs on');
    for (const f of forks) {
      const r = await f.commands.run('cat shared.txt; echo; echo $PER_SANDBOX $FROM_TEMPLATE; hostname');
      assert.equal(r.stdout, `before the fork\nkept yes\n${f.sandboxId}\n`);
      assert.equal((await f.getInfo()).state, 'running');
    }

    await forks[0].files.write('/home/user/proj/shared.txt', 'fork 0 wrote this');
    await forks[1].files.write('/home/user/proj/only-in-1.txt', 'one');
    await src.files.write('/home/user/proj/shared.txt', 'the source wrote this');
    assert.equal(await read(forks[0], 'shared.txt'), 'fork 0 wrote this');
    assert.equal(await read(forks[1], 'shared.txt'), 'before the fork');
    assert.equal(await read(forks[2], 'shared.txt'), 'before the fork');
    assert.equal(await read(src, 'shared.txt'), 'the source wrote this');
    for (const s of [src, forks[0], forks[2]]) assert.equal(await s.files.exists('/home/user/proj/only-in-1.txt'), false);

    // The instance method, and a fork of a paused sandbox (its saved layers).
    const [one] = await src.fork({ count: 1 });
    assert.ok(one instanceof Sandbox, one?.message);
    forks.push(one);
    assert.equal(await read(one, 'shared.txt'), 'the source wrote this');
    await src.files.write('/home/user/proj/paused.txt', 'written before the pause');
    assert.equal(await src.pause({ keepMemory: false }), true);
    const [fromPaused] = await Sandbox.fork(src.sandboxId, { ...hutch.opts, count: 1 });
    assert.ok(fromPaused instanceof Sandbox, fromPaused?.message);
    forks.push(fromPaused);
    assert.equal(await read(fromPaused, 'paused.txt'), 'written before the pause');
    assert.equal((await src.getInfo()).state, 'paused', 'forking does not resume the source');

    // Forks leave no snapshot behind.
    assert.deepEqual(await allSnapshots({}), []);
    await assert.rejects(Sandbox.fork('nosuchsandbox000000', { ...hutch.opts, count: 1 }), (e) => e instanceof SandboxNotFoundError || e instanceof NotFoundError);
  } finally {
    for (const f of forks) if (f instanceof Sandbox) await f.kill();
    await Sandbox.kill(src.sandboxId, hutch.opts);
  }
});

test('a sandbox from a deleted snapshot pauses and resumes; snapshots survive a restart', async () => {
  const h = await startHutch();
  try {
    const src = await Sandbox.create('base', h.opts);
    await src.files.write('/tmp/s', 'from the snapshot');
    const gone = await src.createSnapshot();
    const kept = await src.createSnapshot({ name: 'snap-kept' });
    await src.kill();
    const x = await Sandbox.create(gone.snapshotId, h.opts);
    await x.files.write('/tmp/x', 'own');
    assert.equal(await x.pause({ keepMemory: false }), true);
    assert.equal(await Sandbox.deleteSnapshot(gone.snapshotId, h.opts), true);
    await x.connect();
    assert.equal((await x.commands.run('cat /tmp/s; echo; cat /tmp/x')).stdout, 'from the snapshot\nown');
    await x.kill();

    const stopped = await h.stop({ keepState: true });
    assert.equal(stopped.code, 0);
    const h2 = await startHutch([], { stateDir: h.stateDir });
    Object.assign(h, h2);
    const list = await Sandbox.listSnapshots({ ...h.opts }).nextItems();
    assert.deepEqual(list.map((s) => s.snapshotId), [kept.snapshotId]);
    const y = await Sandbox.create('snap-kept', h.opts);
    assert.equal(await y.files.read('/tmp/s'), 'from the snapshot');
    await y.kill();
  } finally {
    const { code, leftovers } = await h.stop();
    assert.equal(code, 0, h.log());
    assert.deepEqual(leftovers, []);
  }
});

// e2b 2.51.0 CreateSnapshotOpts.name: "If a snapshot template with this name already exists, a
// new build will be assigned to the existing template instead of creating a new one" (and the
// CLI's `sandbox snapshot create -n` "reuses the existing template").
test('createSnapshot with the name of an existing snapshot adds a build to it', async () => {
  const src = await Sandbox.create('base', hutch.opts);
  const made = [];
  const snaps = new Set();
  try {
    await src.files.write('/tmp/v', 'first');
    const a = await src.createSnapshot({ name: 'snap-reused' });
    snaps.add(a.snapshotId);
    await src.files.write('/tmp/v', 'second');
    const b = await src.createSnapshot({ name: 'snap-reused' });
    snaps.add(b.snapshotId);
    assert.equal(b.snapshotId, a.snapshotId, 'the same snapshot template');
    assert.ok(b.names.some((n) => /(^|\/)snap-reused(:|$)/.test(n)), JSON.stringify(b));
    const latest = await Sandbox.create('snap-reused', hutch.opts);
    made.push(latest);
    assert.equal(await latest.files.read('/tmp/v'), 'second', 'the name gives the latest snapshot');
  } finally {
    for (const s of [src, ...made]) await s.kill();
    for (const id of snaps) await Sandbox.deleteSnapshot(id, hutch.opts);
  }
});
