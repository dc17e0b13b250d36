// The official e2b SDK's Template builder, unmodified, against a real `hutch serve`
// (e2b-compat 2.7, 5.2, 5.3): builds with RUN, COPY, ENV, WORKDIR and USER steps, the layer
// cache, start and ready commands, failures, names, tags and deletion.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Sandbox, Template, BuildError, waitForPort, waitForFile } from 'e2b';
import { startHutch } from './lib/hutch.mjs';
import { tempDir, removeDir } from './lib/fsutil.mjs';

let hutch;
let ctx; // the build context (fileContextPath)

before(async () => {
  hutch = await startHutch();
  ctx = tempDir('hutch-tpl-ctx-');
  fs.mkdirSync(path.join(ctx, 'app', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(ctx, 'app', 'hello.txt'), 'hello from the context\n');
  fs.writeFileSync(path.join(ctx, 'app', 'sub', 'run.sh'), '#!/bin/sh\necho ran\n', { mode: 0o755 });
  fs.chmodSync(path.join(ctx, 'app', 'sub', 'run.sh'), 0o755);
});

after(async () => {
  removeDir(ctx);
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

// Builds t as name and returns the build info, the log messages and the time it took.
async function build(t, name, options = {}, h = hutch) {
  const logs = [];
  const began = Date.now();
  const info = await Template.build(t, name, { ...h.opts, ...options, onBuildLogs: (e) => logs.push(e) });
  return { info, logs: logs.map((e) => e.message), entries: logs, ms: Date.now() - began };
}

async function api(method, p, h = hutch) {
  const r = await fetch(`${h.url}${p}`, { method, headers: { 'X-API-KEY': h.apiKey } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

// A fresh builder each time: Template.build with skipCache marks the builder itself forced.
function appTemplate() {
  return Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .runCmd('useradd -m -s /bin/bash app', { user: 'root' })
    .setUser('app')
    .setWorkdir('/home/app/work')
    .copy('app', '/home/app/work/app')
    .runCmd('echo built > built.txt && id -un > whoami.txt && pwd > where.txt')
    .setEnvs({ GREETING: 'hello world', MODE: 'test' })
    .setStartCmd('python3 -m http.server 8123 --bind 127.0.0.1 > /tmp/http.log 2>&1', waitForPort(8123));
}

const cachedCount = (logs) => logs.filter((m) => /^cached$/i.test(m.trim())).length;

test('Template.build: RUN, COPY, ENV, WORKDIR, USER and a start command; a sandbox from it', async (t) => {
  const first = await build(appTemplate(), 'tpl-app');
  assert.equal(first.info.name, 'tpl-app');
  assert.ok(first.info.templateId, 'a template id');
  assert.ok(first.info.buildId, 'a build id');
  assert.ok(first.logs.some((m) => /Step 1\/\d+: RUN/.test(m)), first.logs.join('\n'));
  assert.ok(first.logs.some((m) => /COPY/.test(m)), first.logs.join('\n'));
  assert.equal(cachedCount(first.logs), 0, 'nothing is cached in a first build:\n' + first.logs.join('\n'));
  t.diagnostic(`first build: ${first.ms} ms`);

  const sbx = await Sandbox.create('tpl-app', hutch.opts);
  try {
    // The start command ran and passed its ready command before create returned.
    const ready = await sbx.commands.run('ss -Htln "sport = :8123" | wc -l; curl -s http://127.0.0.1:8123/app/hello.txt');
    assert.equal(ready.stdout, '1\nhello from the context\n');
    const ps = await sbx.commands.run('ps -o user=,args= -C python3');
    assert.match(ps.stdout, /^app\s+python3 -m http\.server 8123/m);

    const who = await sbx.commands.run('id -un; pwd; echo "$GREETING|$MODE"');
    assert.equal(who.stdout, 'app\n/home/app/work\nhello world|test\n');

    const files = await sbx.commands.run(
      'cat app/hello.txt built.txt whoami.txt where.txt; stat -c "%U %a %n" app app/hello.txt app/sub/run.sh; app/sub/run.sh'
    );
    assert.equal(
      files.stdout,
      'hello from the context\nbuilt\napp\n/home/app/work\n' +
        'app 755 app\napp 644 app/hello.txt\napp 755 app/sub/run.sh\nran\n'
    );
    assert.equal(await sbx.files.read('/home/app/work/app/hello.txt'), 'hello from the context\n');

    const info = await sbx.getInfo();
    assert.equal(info.templateId, first.info.templateId);
    assert.equal(info.name, 'tpl-app');
  } finally {
    await sbx.kill();
  }

  // The same template again: every step comes from the cache.
  const again = await build(appTemplate(), 'tpl-app');
  assert.equal(again.info.templateId, first.info.templateId, 'a rebuild keeps the template');
  assert.notEqual(again.info.buildId, first.info.buildId, 'a rebuild is a new build');
  assert.equal(cachedCount(again.logs), 4, 'RUN, WORKDIR, COPY, RUN are all cached:\n' + again.logs.join('\n'));
  assert.ok(again.logs.some((m) => /Skipping upload of 'app', already cached/.test(m)), again.logs.join('\n'));
  t.diagnostic(`cached rebuild: ${again.ms} ms`);

  // skipCache: every step runs again.
  const forced = await build(appTemplate(), 'tpl-app', { skipCache: true });
  assert.equal(cachedCount(forced.logs), 0, 'skipCache runs every step:\n' + forced.logs.join('\n'));
  t.diagnostic(`forced rebuild: ${forced.ms} ms`);

  // One step forced with the builder's skipCache(): only that one runs, the ones above it come
  // from the cache.
  const partly = await build(
    Template({ fileContextPath: ctx }).fromTemplate('base').runCmd('echo one > /tmp/one').skipCache().runCmd('date +%s%N > /tmp/two'),
    'tpl-partly'
  );
  assert.equal(cachedCount(partly.logs), 0);
  const partly2 = await build(
    Template({ fileContextPath: ctx }).fromTemplate('base').runCmd('echo one > /tmp/one').skipCache().runCmd('date +%s%N > /tmp/two'),
    'tpl-partly'
  );
  assert.equal(cachedCount(partly2.logs), 1, 'only the first RUN is cached:\n' + partly2.logs.join('\n'));

  const s2 = await Sandbox.create('tpl-app', hutch.opts);
  try {
    assert.equal((await s2.commands.run('cat built.txt; curl -s http://127.0.0.1:8123/built.txt')).stdout, 'built\nbuilt\n');
  } finally {
    await s2.kill();
  }
});

// A forced step never replaces the layer it would have reused: sandboxes running on it (an
// overlay lower layer), sandboxes paused to disk and older builds (tags) keep what they had.
test('a forced rebuild leaves sandboxes already made from the template as they were', async () => {
  const make = () =>
    Template()
      .fromTemplate('base')
      .runCmd('date +%s%N > /opt/stamp; mkdir -p /opt/many; for i in $(seq 1 20); do echo $i > /opt/many/$i; done', { user: 'root' });
  await build(make(), 'tpl-forced:v1');
  const running = await Sandbox.create('tpl-forced:v1', hutch.opts);
  const paused = await Sandbox.create('tpl-forced:v1', hutch.opts);
  try {
    const state = 'cat /opt/stamp; ls /opt/many | wc -l';
    const before = (await running.commands.run(state)).stdout;
    assert.equal((await paused.commands.run(state)).stdout, before);
    assert.equal(await paused.pause({ keepMemory: false }), true);
    await build(make(), 'tpl-forced:v2', { skipCache: true });
    assert.equal((await running.commands.run(state)).stdout, before, 'a running sandbox keeps its files');
    await paused.connect();
    assert.equal((await paused.commands.run(state)).stdout, before, 'a paused sandbox resumes on what it had');
    const v1 = await Sandbox.create('tpl-forced:v1', hutch.opts);
    try {
      assert.equal((await v1.commands.run(state)).stdout, before, 'the tag v1 still names the first build');
    } finally {
      await v1.kill();
    }
  } finally {
    await running.kill();
    await paused.kill();
  }
});

test('fromBaseImage: the host base (e2bdev/base), defaults of user and workdir', async () => {
  const t = Template({ fileContextPath: ctx })
    .fromBaseImage()
    .copy('app/hello.txt', '/opt/data/')
    .runCmd('cp /opt/data/hello.txt /opt/data/copy.txt', { user: 'root' })
    .setEnvs({ FROM_BASE: '1' })
    .setStartCmd('sh -c "sleep 1; date +%s > /tmp/started; exec sleep 3600"', waitForFile('/tmp/started'));
  const { info, logs } = await build(t, 'tpl-from-image');
  assert.ok(logs.length > 0);
  const sbx = await Sandbox.create(info.name, hutch.opts);
  try {
    const r = await sbx.commands.run('cat /opt/data/hello.txt /opt/data/copy.txt; echo $FROM_BASE; id -un; test -s /tmp/started && echo started; pgrep -x sleep | wc -l');
    assert.equal(r.stdout, 'hello from the context\nhello from the context\n1\nuser\nstarted\n1\n');
  } finally {
    await sbx.kill();
  }
});

test('cpuCount and memoryMB of a build are the limits of its sandboxes; long logs come complete', async () => {
  const { info, logs } = await build(Template().fromTemplate('base').runCmd('seq 1 250'), 'tpl-sized', { cpuCount: 1, memoryMB: 768 });
  // More lines than one status answer holds (100): the SDK pages through them all, in order.
  const nums = logs.filter((m) => /^\d+$/.test(m)).map(Number);
  assert.deepEqual(nums, Array.from({ length: 250 }, (_, i) => i + 1));
  const sbx = await Sandbox.create('tpl-sized', hutch.opts);
  try {
    const i = await sbx.getInfo();
    assert.equal(i.cpuCount, 1);
    assert.equal(i.memoryMB, 768);
    const [m] = await sbx.getMetrics();
    assert.equal(m.memTotal, 768 * 1024 * 1024);
  } finally {
    await sbx.kill();
  }
  const list = await api('GET', '/templates');
  const mine = list.body.find((x) => x.templateID === info.templateId);
  assert.equal(mine.cpuCount, 1);
  assert.equal(mine.memoryMB, 768);
  assert.equal(mine.spawnCount, 1);
  assert.ok(mine.lastSpawnedAt);
});

test('builds side by side that share steps all succeed', async () => {
  // The same first step (the same layer) in every build, run at the same time.
  const make = (i) =>
    Template()
      .fromTemplate('base')
      .runCmd('mkdir -p /opt/common && for i in $(seq 1 100); do echo $i > /opt/common/$i; done; sleep 1', { user: 'root' })
      .runCmd(`echo ${i} > /opt/which`, { user: 'root' });
  const results = await Promise.allSettled([0, 1, 2].map((i) => build(make(i), `tpl-side-${i}`)));
  assert.deepEqual(results.map((r) => r.reason?.message ?? 'built'), ['built', 'built', 'built']);
  for (let i = 0; i < 3; i++) {
    const sbx = await Sandbox.create(`tpl-side-${i}`, hutch.opts);
    try {
      assert.equal((await sbx.commands.run('cat /opt/which; ls /opt/common | wc -l')).stdout, `${i}\n100\n`);
    } finally {
      await sbx.kill();
    }
  }
});

test('a template built on another keeps working when that one is deleted; create by template id', async () => {
  const a = await build(Template().fromTemplate('base').runCmd('echo A > /opt/a', { user: 'root' }).setEnvs({ FROM_A: '1' }), 'tpl-lower');
  const b = await build(Template().fromTemplate('tpl-lower').runCmd('echo B > /opt/b', { user: 'root' }), 'tpl-upper');
  assert.equal((await api('DELETE', `/templates/${a.info.templateId}`)).status, 204);
  for (const ref of ['tpl-upper', b.info.templateId]) {
    const sbx = await Sandbox.create(ref, hutch.opts);
    try {
      assert.equal((await sbx.commands.run('cat /opt/a /opt/b; echo $FROM_A')).stdout, 'A\nB\n1\n');
    } finally {
      await sbx.kill();
    }
  }
});

test('a failing RUN step fails the build with a BuildError naming the exit code', async () => {
  const t = Template().fromTemplate('base').runCmd('echo fine').runCmd('echo about to fail; exit 7');
  const logs = [];
  await assert.rejects(
    Template.build(t, 'tpl-fails', { ...hutch.opts, onBuildLogs: (e) => logs.push(e.message) }),
    (e) => {
      assert.ok(e instanceof BuildError, `${e?.constructor?.name}: ${e?.message}`);
      assert.match(e.message, /exit(ed)? (with )?code 7|exit code 7|status 7/i);
      return true;
    }
  );
  assert.ok(logs.includes('about to fail'), 'the step\'s output is in the logs:\n' + logs.join('\n'));
  assert.ok(logs.some((m) => /Step 2\/2/.test(m)), logs.join('\n'));
});

test('a ready command that never passes fails the build after --ready-timeout', async () => {
  const h = await startHutch(['--ready-timeout', '3']);
  try {
    const t = Template().fromTemplate('base').setStartCmd('sleep 1000', waitForFile('/tmp/never'));
    const began = Date.now();
    await assert.rejects(Template.build(t, 'tpl-never-ready', { ...h.opts }), (e) => {
      assert.ok(e instanceof BuildError, `${e?.constructor?.name}: ${e?.message}`);
      assert.match(e.message, /ready command/i);
      assert.match(e.message, /3 s|timed? ?out|timeout/i);
      return true;
    });
    assert.ok(Date.now() - began >= 3000, 'it waited for the ready command');
    // The server is still fine and builds the next template.
    const ok = Template().fromTemplate('base').setStartCmd('touch /tmp/ready; sleep 1000', waitForFile('/tmp/ready'));
    await Template.build(ok, 'tpl-ready', { ...h.opts });
    const sbx = await Sandbox.create('tpl-ready', h.opts);
    await sbx.kill();
  } finally {
    const { code, leftovers } = await h.stop();
    assert.equal(code, 0, h.log());
    assert.deepEqual(leftovers, [], 'the build sandbox that never got ready is gone');
  }
});

test('exists, aliasExists, tags and delete', async () => {
  assert.equal(await Template.exists('tpl-tags', hutch.opts), false);
  assert.equal(await Template.aliasExists('tpl-tags', hutch.opts), false);

  const v1 = await build(Template().fromTemplate('base').runCmd('echo v1 > /tmp/version'), 'tpl-tags:v1', { tags: ['extra'] });
  assert.ok(v1.info.tags.includes('v1'), JSON.stringify(v1.info));
  assert.equal(await Template.exists('tpl-tags', hutch.opts), true);
  assert.equal(await Template.aliasExists('tpl-tags', hutch.opts), true);
  assert.equal(await Template.exists('tpl-no-such-template', hutch.opts), false);

  const v2 = await build(Template().fromTemplate('base').runCmd('echo v2 > /tmp/version'), 'tpl-tags:v2');
  assert.equal(v2.info.templateId, v1.info.templateId);

  const assigned = await Template.assignTags('tpl-tags:v1', ['prod', 'stable'], hutch.opts);
  assert.equal(assigned.buildId, v1.info.buildId);
  assert.deepEqual([...assigned.tags].sort(), ['prod', 'stable']);

  const tags = await Template.getTags(v1.info.templateId, hutch.opts);
  const byTag = Object.fromEntries(tags.map((x) => [x.tag, x.buildId]));
  assert.equal(byTag.v1, v1.info.buildId, JSON.stringify(tags));
  assert.equal(byTag.prod, v1.info.buildId);
  assert.equal(byTag.stable, v1.info.buildId);
  assert.equal(byTag.v2, v2.info.buildId);
  for (const x of tags) assert.ok(x.createdAt instanceof Date || typeof x.createdAt === 'string');

  const version = async (ref) => {
    const s = await Sandbox.create(ref, hutch.opts);
    try {
      return (await s.commands.run('cat /tmp/version')).stdout.trim();
    } finally {
      await s.kill();
    }
  };
  assert.equal(await version('tpl-tags:v1'), 'v1');
  assert.equal(await version('tpl-tags:prod'), 'v1');
  assert.equal(await version('tpl-tags:v2'), 'v2');
  assert.equal(await version('tpl-tags'), 'v2', 'the name alone is the latest build (tag default)');

  await Template.removeTags('tpl-tags', 'prod', hutch.opts);
  const after = (await Template.getTags(v1.info.templateId, hutch.opts)).map((x) => x.tag);
  assert.ok(!after.includes('prod'), after.join(','));
  assert.ok(after.includes('stable'));
  await assert.rejects(Sandbox.create('tpl-tags:prod', hutch.opts));

  // Listed, then deleted through the API; a sandbox already made from it keeps running.
  const keep = await Sandbox.create('tpl-tags', hutch.opts);
  try {
    const list = await api('GET', '/templates');
    assert.equal(list.status, 200);
    const mine = list.body.find((x) => x.templateID === v1.info.templateId);
    assert.ok(mine, JSON.stringify(list.body));
    assert.ok(mine.aliases.includes('tpl-tags') || mine.names.some((n) => n.startsWith('tpl-tags')), JSON.stringify(mine));
    assert.equal(mine.buildStatus, 'ready');

    const del = await api('DELETE', `/templates/${v1.info.templateId}`);
    assert.equal(del.status, 204, JSON.stringify(del.body));
    assert.equal(await Template.exists('tpl-tags', hutch.opts), false);
    await assert.rejects(Sandbox.create('tpl-tags', hutch.opts));
    assert.equal((await api('DELETE', `/templates/${v1.info.templateId}`)).status, 404);
    const list2 = await api('GET', '/templates');
    assert.ok(!list2.body.some((x) => x.templateID === v1.info.templateId));

    assert.equal((await keep.commands.run('cat /tmp/version')).stdout, 'v2\n');
  } finally {
    await keep.kill();
  }
  // Its name is free again.
  const reborn = await build(Template().fromTemplate('base').runCmd('echo v3 > /tmp/version'), 'tpl-tags');
  assert.notEqual(reborn.info.templateId, v1.info.templateId);
  assert.equal(await version('tpl-tags'), 'v3');
});
