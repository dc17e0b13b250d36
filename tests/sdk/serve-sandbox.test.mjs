// The official e2b SDK, unmodified, against a real `hutch serve`: sandbox lifecycle through
// the control plane, and envd traffic through the gateway into real namespace sandboxes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, SandboxNotFoundError, NotFoundError } from 'e2b';
import { startHutch, processesOf } from './lib/hutch.mjs';

let hutch;

before(async () => {
  hutch = await startHutch();
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

test('create, run a command as user, files, kill', async () => {
  assert.deepEqual(processesOf(hutch.stateDir), []);
  const sbx = await Sandbox.create('base', hutch.opts);
  assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/);
  const r = await sbx.commands.run('id -un; pwd; echo $HOME');
  assert.equal(r.stdout, 'user\n/home/user\n/home/user\n');
  await sbx.files.write('/home/user/a.txt', 'hello from the host');
  assert.equal(await sbx.files.read('/home/user/a.txt'), 'hello from the host');
  assert.deepEqual((await sbx.files.list('/home/user')).map((e) => e.name), ['a.txt']);
  assert.equal(await sbx.isRunning(), true);
  assert.ok(processesOf(hutch.stateDir).length >= 1, 'the leak check must see a live sandbox');
  await sbx.kill();
  assert.equal(await sbx.isRunning(), false);
  await assert.rejects(sbx.commands.run('true'), /not running|not found|502/i);
});

test('the sandbox is isolated: own pid namespace, own hostname, no network', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, allowInternetAccess: false });
  try {
    const r = await sbx.commands.run(
      'cat /proc/1/cmdline | tr "\\0" " "; echo; hostname; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "'
    );
    const [pid1, hostname, nets] = r.stdout.split('\n');
    // envd is pid 1, started through its own bundled loader (/opt/hutch/lib).
    assert.match(pid1, /^\/opt\/hutch\/lib\/ld\.so .* \/opt\/hutch\/envd --listen /);
    assert.equal(hostname, sbx.sandboxId);
    assert.equal(nets, 'lo');
  } finally {
    await sbx.kill();
  }
});

test('sandbox-wide env vars from create reach every command', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, envs: { GREETING: 'hi', OTHER: 'x y' } });
  try {
    const r = await sbx.commands.run('echo "$GREETING|$OTHER"');
    assert.equal(r.stdout, 'hi|x y\n');
    const r2 = await sbx.commands.run('echo $GREETING', { envs: { GREETING: 'override' } });
    assert.equal(r2.stdout, 'override\n');
  } finally {
    await sbx.kill();
  }
});

test('getInfo, connect and list with metadata filters and pagination', async () => {
  const tag = `t${Date.now()}`;
  const made = [];
  for (let i = 0; i < 3; i++) made.push(await Sandbox.create('base', { ...hutch.opts, metadata: { tag, n: String(i) } }));
  try {
    const info = await Sandbox.getInfo(made[0].sandboxId, hutch.opts);
    assert.equal(info.sandboxId, made[0].sandboxId);
    assert.equal(info.templateId, 'base');
    assert.equal(info.state, 'running');
    assert.deepEqual(info.metadata, { tag, n: '0' });
    assert.equal(info.cpuCount, 2);
    assert.equal(info.memoryMB, 512);
    assert.ok(info.endAt > info.startedAt);

    const again = await Sandbox.connect(made[1].sandboxId, hutch.opts);
    assert.equal((await again.commands.run('echo reconnected')).stdout, 'reconnected\n');

    const pager = Sandbox.list({ ...hutch.opts, query: { metadata: { tag } }, limit: 2 });
    const first = await pager.nextItems();
    assert.equal(first.length, 2);
    assert.equal(pager.hasNext, true);
    const second = await pager.nextItems();
    assert.equal(second.length, 1);
    assert.equal(pager.hasNext, false);
    const ids = [...first, ...second].map((s) => s.sandboxId).sort();
    assert.deepEqual(ids, made.map((s) => s.sandboxId).sort());

    const one = await Sandbox.list({ ...hutch.opts, query: { metadata: { tag, n: '2' } } }).nextItems();
    assert.deepEqual(one.map((s) => s.sandboxId), [made[2].sandboxId]);
    const none = await Sandbox.list({ ...hutch.opts, query: { metadata: { tag: 'no such' } } }).nextItems();
    assert.deepEqual(none, []);
  } finally {
    for (const s of made) await s.kill();
  }
});

test('kill and getInfo of an unknown sandbox', async () => {
  assert.equal(await Sandbox.kill('nosuchsandbox000000', hutch.opts), false);
  await assert.rejects(Sandbox.getInfo('nosuchsandbox000000', hutch.opts), (e) => e instanceof SandboxNotFoundError || e instanceof NotFoundError);
});

test('a sandbox is killed when its timeout passes, and setTimeout moves the end', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, timeoutMs: 60_000 });
  await sbx.setTimeout(2_000);
  const info = await sbx.getInfo();
  assert.ok(info.endAt.getTime() - Date.now() < 5_000);
  const deadline = Date.now() + 15_000;
  while ((await sbx.isRunning()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.equal(await sbx.isRunning(), false);
  assert.equal(await Sandbox.kill(sbx.sandboxId, hutch.opts), false);
});

test('metrics report the sandbox\'s usage', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  try {
    await sbx.commands.run('head -c 1000000 /dev/zero > /tmp/blob');
    const all = await sbx.getMetrics();
    // The history (a sample every 5 s) and, last, a sample taken now.
    assert.ok(all.length >= 1);
    const m = all.slice(-1);
    assert.equal(m[0].cpuCount, 2);
    assert.ok(m[0].memUsed > 0);
    assert.equal(m[0].memTotal, 512 * 1024 * 1024);
    assert.ok(m[0].diskUsed >= 1_000_000);
    assert.equal(m[0].diskTotal, 1024 * 1024 * 1024);
    // Six seconds later the sampler has taken at least one more.
    await new Promise((r) => setTimeout(r, 6000));
    const later = await sbx.getMetrics();
    assert.ok(later.length >= 2, `${later.length} samples`);
    assert.ok(later.every((x, i) => i === 0 || x.timestamp >= later[i - 1].timestamp));
    const past = await sbx.getMetrics({ start: new Date(0), end: new Date(Date.now() - 3_600_000) });
    assert.equal(past.length, 0);
  } finally {
    await sbx.kill();
  }
});

test('sandboxes do not see each other', async () => {
  const a = await Sandbox.create('base', hutch.opts);
  const b = await Sandbox.create('base', hutch.opts);
  try {
    await a.files.write('/tmp/secret', 'only in a');
    assert.equal(await b.files.exists('/tmp/secret'), false);
    const ps = await b.commands.run('ls /proc | grep -c "^[0-9]"');
    assert.ok(Number(ps.stdout) < 10, `b sees ${ps.stdout} processes`);
  } finally {
    await a.kill();
    await b.kill();
  }
});

test('signed upload and download URLs work without any sandbox header', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  try {
    const up = await sbx.uploadUrl('/home/user/up.txt');
    assert.ok(up.startsWith(hutch.url + '/files?'), up);
    const form = new FormData();
    form.append('file', new Blob(['via a signed url']), '/home/user/up.txt');
    const r = await fetch(up, { method: 'POST', body: form });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(await sbx.files.read('/home/user/up.txt'), 'via a signed url');

    const down = await sbx.downloadUrl('/home/user/up.txt', { useSignatureExpiration: 60 });
    const d = await fetch(down);
    assert.equal(d.status, 200);
    assert.equal(await d.text(), 'via a signed url');

    const forged = down.replace(/signature=v1_[^&]+/, 'signature=v1_AAAA');
    assert.equal((await fetch(forged)).status, 401);
    const other = await sbx.downloadUrl('/etc/shadow');
    assert.equal((await fetch(other.replace('%2Fetc%2Fshadow', '%2Fetc%2Fpasswd'))).status, 401);
  } finally {
    await sbx.kill();
  }
});

test('many sandboxes at once: concurrent creates, each its own', async () => {
  const made = await Promise.all(Array.from({ length: 12 }, () => Sandbox.create('base', hutch.opts)));
  try {
    assert.equal(new Set(made.map((s) => s.sandboxId)).size, 12);
    const outs = await Promise.all(made.map((s) => s.commands.run('hostname; cat /proc/sys/kernel/random/boot_id')));
    const hostnames = outs.map((r) => r.stdout.split('\n')[0]);
    assert.deepEqual(hostnames, made.map((s) => s.sandboxId));
    const listed = await Sandbox.list({ ...hutch.opts, limit: 100 }).nextItems();
    for (const s of made) assert.ok(listed.some((l) => l.sandboxId === s.sandboxId));
  } finally {
    await Promise.all(made.map((s) => s.kill()));
  }
  for (const s of made) assert.equal(await s.isRunning(), false);
});

test('a stream in flight ends cleanly when its sandbox is killed', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  const h = await sbx.commands.run('sleep 30', { background: true });
  await Sandbox.kill(sbx.sandboxId, hutch.opts);
  await assert.rejects(h.wait());
  assert.equal(await sbx.isRunning(), false);
});

test('base template: user has passwordless sudo to the sandbox root, others do not', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  try {
    const r = await sbx.commands.run('sudo -n id -u; sudo -n cat /etc/shadow | cut -d: -f1 | head -1');
    assert.equal(r.stdout, '0\nroot\n');
    assert.equal(r.stderr, '', 'sudo warns about nothing (the host name resolves)');
    assert.equal((await sbx.commands.run('getent hosts $(hostname) | wc -l')).stdout, '1\n');
    const denied = await sbx.commands.run('sudo -n true', { user: 'nobody' }).catch((e) => e.result);
    assert.notEqual(denied.exitCode, 0);
    // The sandbox's root is still unprivileged on the host: no mounts, no modules, no raw net.
    const m = await sbx.commands.run('sudo -n mount -t tmpfs x /mnt').catch((e) => e.result);
    assert.notEqual(m.exitCode, 0);
  } finally {
    await sbx.kill();
  }
});

test('networking: online by default, offline without internet access, and the host stays out of reach', async () => {
  const online = await Sandbox.create('base', hutch.opts);
  const offline = await Sandbox.create('base', { ...hutch.opts, allowInternetAccess: false });
  try {
    const ifaces = async (sbx) =>
      (await sbx.commands.run('tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort')).stdout.trim().split('\n');
    assert.deepEqual(await ifaces(offline), ['lo']);
    const on = await ifaces(online);
    assert.equal(on.length, 2, on.join(','));
    const route = (await online.commands.run('cat /proc/net/route')).stdout;
    const gw = route.split('\n').map((l) => l.split(/\s+/)).find((f) => f[1] === '00000000');
    assert.ok(gw, 'a default route');
    // The host end of the link (the gateway) answers nothing, not even hutch's own port.
    const hex = gw[2];
    const addr = [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
    const probe = await online.commands
      .run(`timeout 3 bash -c 'echo > /dev/tcp/${addr}/${hutch.port}' && echo reached || echo blocked`)
      .catch((e) => e.result);
    assert.equal(probe.stdout.trim(), 'blocked');
  } finally {
    await online.kill();
    await offline.kill();
  }
});

test('pause keeps processes and files; connect resumes them', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  try {
    await sbx.files.write('/home/user/kept.txt', 'still here');
    await sbx.commands.run('(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done) >/dev/null 2>&1 &');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await sbx.pause(), true);
    assert.equal(await sbx.isRunning(), false);
    assert.equal((await sbx.getInfo()).state, 'paused');
    const listed = await Sandbox.list({ ...hutch.opts, query: { state: ['paused'] } }).nextItems();
    assert.ok(listed.some((s) => s.sandboxId === sbx.sandboxId));
    assert.equal(await sbx.pause(), false, 'pausing twice says it was already paused');

    const again = await Sandbox.connect(sbx.sandboxId, hutch.opts);
    assert.equal((await again.getInfo()).state, 'running');
    assert.equal(await again.files.read('/home/user/kept.txt'), 'still here');
    const a = Number((await again.commands.run('cat /tmp/counter')).stdout);
    await new Promise((r) => setTimeout(r, 300));
    const b = Number((await again.commands.run('cat /tmp/counter')).stdout);
    assert.ok(b > a && a > 0, `the background loop runs again (${a} -> ${b})`);
  } finally {
    await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

test('onTimeout pause pauses instead of killing; autoResume resumes on traffic', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, lifecycle: { onTimeout: 'pause', autoResume: true } });
  try {
    await sbx.setTimeout(1000);
    const deadline = Date.now() + 15000;
    while ((await sbx.getInfo()).state !== 'paused' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const info = await sbx.getInfo();
    assert.equal(info.state, 'paused');
    assert.equal(info.lifecycle.onTimeout, 'pause');
    assert.equal(info.lifecycle.autoResume, true);
    // Traffic wakes it.
    assert.equal((await sbx.commands.run('echo awake')).stdout, 'awake\n');
    assert.equal((await sbx.getInfo()).state, 'running');
  } finally {
    await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

test('updateNetwork replaces the egress policy of an online sandbox on the host', async () => {
  const { execFileSync } = await import('node:child_process');
  const ruleset = () => execFileSync('nft', ['list', 'table', 'inet', 'hutch']).toString();
  const sbx = await Sandbox.create('base', hutch.opts);
  const offline = await Sandbox.create('base', { ...hutch.opts, allowInternetAccess: false });
  try {
    assert.ok(!ruleset().includes('198.51.100.0/24'));
    await sbx.updateNetwork({ denyOut: ['198.51.100.0/24'], allowOut: ['203.0.113.7'] });
    const after = ruleset();
    assert.ok(after.includes('198.51.100.0/24'), 'deny list installed');
    assert.ok(after.includes('203.0.113.7'), 'allow list installed');
    await sbx.updateNetwork({});
    assert.ok(!ruleset().includes('198.51.100.0/24'), 'the whole config was replaced');
    await assert.rejects(sbx.updateNetwork({ denyOut: ['not a cidr'] }), /invalid/i);
    await assert.rejects(offline.updateNetwork({ denyOut: ['198.51.100.0/24'] }), /offline/);
    assert.equal((await sbx.commands.run('echo still fine')).stdout, 'still fine\n');
  } finally {
    await sbx.kill();
    await offline.kill();
  }
});

test('row 20: sandboxes from the warm pool share no randomness, names or tokens', async () => {
  const warm = await startHutch(['--warm-pool', '3']);
  try {
    const metrics = async () => (await (await fetch(`${warm.url}/metrics`)).text());
    for (let i = 0; i < 300 && !/^hutch_warm_pool_sandboxes 3$/m.test(await metrics()); i++)
      await new Promise((r) => setTimeout(r, 20));
    const made = await Promise.all([0, 1, 2].map(() => Sandbox.create('base', warm.opts)));
    assert.match(await metrics(), /^hutch_warm_pool_hits_total [1-9]/m);
    const probe =
      'hostname; cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo;' +
      ' python3 -c "import random, os; print(random.getrandbits(64), os.urandom(8).hex())"';
    const outs = await Promise.all(made.map((s) => s.commands.run(probe)));
    const rows = outs.map((r) => r.stdout.trim().split('\n'));
    for (let field = 0; field < 4; field++) {
      const values = new Set(rows.map((r) => r[field]));
      assert.equal(values.size, 3, `field ${field} differs between sandboxes: ${rows.map((r) => r[field])}`);
    }
    assert.equal(new Set(made.map((s) => s.envdAccessToken)).size, 3);
    for (const s of made) await s.kill();
  } finally {
    const { code, leftovers } = await warm.stop();
    assert.equal(code, 0);
    assert.deepEqual(leftovers, []);
  }
});
