#!/usr/bin/env node
// Warm pools, sustained creates and pause/resume (issue 6's goals), each beside a peer measured
// in the same run on the same machine:
// 1. Create from a warm pool (--warm-pool 16; the pool refills between samples, so that each
//    sample is a hit): the server's own time (Server-Timing), the client-visible time through
//    the SDK's Sandbox.create(), and create + first commands.run("echo hi"). Goals: server p50
//    < 2 ms, client p50 < 10 ms, create + first output p50 < 15 ms. The same from a server
//    without a pool (a miss) beside it.
// 2. Peers starting the same command (`bash -l -c "echo hi"`, as envd runs commands.run),
//    timed until its output is read: bubblewrap on a root assembled like hutch's `base`
//    (the host's /usr read-only, the generated /etc of a hutch state directory), `podman run
//    --rm` on the same root imported as an image, and a plain fork+exec (no isolation) as a
//    floor.
// 3. Sustained create + kill per second at concurrency 8 and 32, with and without a pool,
//    beside bubblewrap runs per second at the same concurrency.
// 4. Pause and resume, memory mode (pause {} then connect) and filesystem mode
//    (pause {memory:false} then connect), for a sandbox with 100 MiB written and an empty one,
//    beside `podman pause`/`unpause` and `podman stop -t 0`/`start` of a container, and the
//    floor of saving 100 MiB: copying it from a tmpfs to the same disk.
//
// Never asserts speed. BENCH_RUNS (samples, default 40), BENCH_SECONDS (sustained, default 8),
// BENCH_CYCLES (pause/resume, default 10); BENCH_PODMAN (the podman to use).
import { execFile, execFileSync, spawn } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sandbox } from '../tests/sdk/node_modules/e2b/dist/index.mjs';
import { startHutch } from '../tests/sdk/lib/hutch.mjs';

const run = promisify(execFile);
const N = Number(process.env.BENCH_RUNS || 40);
const SECONDS = Number(process.env.BENCH_SECONDS || 8);
const CYCLES = Number(process.env.BENCH_CYCLES || 10);
const PODMAN_RUNS = Math.max(5, Math.round(N / 3));
const POOL = 16;
const IMAGE = 'hutch-bench-base';
const PODMAN = process.env.BENCH_PODMAN || 'podman'; // another path, or a missing one to try without it

// Capture the Server-Timing of every create the SDK makes. In Node it fetches through its own
// undici dispatcher, which publishes each response's headers on this diagnostics channel.
let lastCreateTiming = null;
diagnostics.subscribe('undici:request:headers', ({ request, response }) => {
  if (request.method !== 'POST' || !/\/sandboxes$/.test(request.path)) return;
  const h = response.headers;
  for (let i = 0; i + 1 < h.length; i += 2)
    if (String(h[i]).toLowerCase() === 'server-timing') lastCreateTiming = Number(/create;dur=([\d.]+)/.exec(String(h[i + 1]))?.[1]);
});
const realFetch = globalThis.fetch;

const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] : null);
const now = () => process.hrtime.bigint();
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const row = (name, unit, hutch, peer, peer_name, goal) =>
  console.log(JSON.stringify({ name, unit, hutch, peer, peer_name, goal, lower_is_better: unit !== 'per s' }));
const note = (s) => console.error(`bench-templates: ${s}`);

function serverMs(res) {
  const m = /create;dur=([\d.]+)/.exec(res.headers.get('server-timing') ?? '');
  return m ? Number(m[1]) : null;
}

async function api(h, method, p, body) {
  const res = await realFetch(`${h.url}${p}`, {
    method,
    headers: { 'X-API-KEY': h.apiKey, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return { res, json: text ? JSON.parse(text) : null };
}

async function metric(h, name) {
  const m = await (await realFetch(`${h.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(m)?.[1] ?? 0);
}

async function waitPoolFull(h, timeoutMs = 5000) {
  const end = Date.now() + timeoutMs;
  while ((await metric(h, 'hutch_warm_pool_sandboxes')) < POOL) {
    if (Date.now() > end) throw new Error('the warm pool did not refill');
    await sleep(2);
  }
}

// Spawns argv and resolves with the time until "hi\n" has been read from its stdout; the
// process's exit is awaited too, untimed.
function untilOutput(argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '', err = '', t = null;
    child.stdout.on('data', (d) => {
      out += d;
      if (t === null && out.includes('hi\n')) t = ms(t0);
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (t === null || code !== 0) reject(new Error(`${argv.join(' ')}: status ${code}: ${err.trim()}`));
      else resolve(t);
    });
  });
}

async function sustained(concurrency, fn) {
  const end = Date.now() + SECONDS * 1000;
  let done = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < end) {
      await fn();
      done++;
    }
  }));
  return { rate: done / (ms(t0) / 1000), done };
}

const CMD = ['/bin/bash', '-l', '-c', 'echo hi'];

function bwrapArgv(root) {
  return ['bwrap', '--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--ro-bind', `${root}/etc`, '/etc',
    '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64',
    '--symlink', 'usr/sbin', '/sbin', '--proc', '/proc', '--dev', '/dev', ...CMD];
}

// podman on the same root: the `base` template's tree imported as an image, the host's /usr
// mounted read-only on it as hutch does. Tries crun (the brief's runtime) first; every refusal
// is reported with podman's own message. Returns { argv(extra), runtime, why } or { why }.
async function podmanSetup(root) {
  const why = [];
  try {
    await run(PODMAN, ['--version']);
  } catch {
    return { why: 'podman is not installed (apt-get install podman crun)' };
  }
  try {
    await run('sh', ['-c', `tar -C '${root}' -c . | '${PODMAN}' import - ${IMAGE}`]);
  } catch (e) {
    return { why: `podman import failed: ${String(e.stderr || e.message).trim().split('\n').pop()}` };
  }
  // podman's default RLIMIT_NOFILE (1048576) is above this process's hard limit where the
  // machine withholds CAP_SYS_RESOURCE; then the runtime's setrlimit fails: ask for less.
  const hardNofile = Number(execFileSync('sh', ['-c', 'ulimit -Hn']).toString().trim()) || 1024;
  const limits = ['--ulimit', `nofile=${Math.min(hardNofile, 1024)}:${Math.min(hardNofile, 1024)}`, '--ulimit', 'nproc=4096:4096'];
  const tries = [['crun', []], ['crun', limits], ['runc', limits]];
  for (const [runtime, extra] of tries) {
    const argv = [PODMAN, 'run', '--rm', '--pull', 'never', '--network', 'none', '--runtime', runtime, ...extra,
      '-v', '/usr:/usr:ro', IMAGE];
    try {
      await untilOutput([...argv, ...CMD]);
      return { argv, runtime, extra, why: why.join('; ') };
    } catch (e) {
      const msg = e.message.split(': status ').pop().replace(/^\d+: /, '').split('\n').pop();
      why.push(`${runtime}${extra.length ? ' (with --ulimit nofile/nproc)' : ''}: ${msg}`);
    }
  }
  return { why: why.join('; ') };
}

async function podmanCleanup(containers) {
  for (const c of containers) await run(PODMAN, ['rm', '-f', '-t', '0', c]).catch(() => {});
  await run(PODMAN, ['rmi', '-f', IMAGE]).catch(() => {});
}

async function main() {
  const servers = [];
  const containers = [];
  let pod = { why: 'not tried' };
  let root = null, emptyHome = null;
  const tmpFiles = [];
  note(`load average at the start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)`);
  try {
    const pooled = await startHutch(['--warm-pool', String(POOL)]);
    servers.push(pooled);
    const plain = await startHutch();
    servers.push(plain);

    // The peers' root: the `base` template's tree of a hutch state directory.
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-bench-root-'));
    fs.cpSync(path.join(pooled.stateDir, 'templates', 'base'), root, { recursive: true, verbatimSymlinks: true });
    pod = await podmanSetup(root);
    if (!pod.argv) note(`podman cannot run here: ${pod.why}`);
    else if (pod.why) note(`podman runs with runtime ${pod.runtime} ${pod.extra.join(' ')}; refused before: ${pod.why}`);
    const podName = pod.argv ? `podman run --rm (${pod.runtime})` : `podman: cannot run here (${pod.why})`;
    emptyHome = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-bench-home-'));

    // Warm-up: both servers, both peers.
    await waitPoolFull(pooled, 20000);
    for (let i = 0; i < 3; i++) {
      await (await Sandbox.create('base', pooled.opts)).kill();
      await (await Sandbox.create('base', plain.opts)).kill();
      await untilOutput(bwrapArgv(root));
    }

    // ---- 1 and 2: creates, interleaved with the peers ----
    const hits0 = await metric(pooled, 'hutch_warm_pool_hits_total');
    const s = { hitServer: [], hitClient: [], hitRaw: [], hitRawServer: [], hitFirst: [], hitRun: [],
      missServer: [], missClient: [], missFirst: [], missRun: [], bwrap: [], fork: [], podman: [] };
    let hitSamples = 0;
    for (let i = 0; i < N; i++) {
      await waitPoolFull(pooled);
      lastCreateTiming = null;
      let t0 = now();
      const a = await Sandbox.create('base', pooled.opts);
      s.hitClient.push(ms(t0));
      s.hitServer.push(lastCreateTiming);
      await a.kill();

      await waitPoolFull(pooled);
      t0 = now();
      const { res, json } = await api(pooled, 'POST', '/sandboxes', { templateID: 'base', timeout: 300 });
      s.hitRaw.push(ms(t0));
      s.hitRawServer.push(serverMs(res));
      await api(pooled, 'DELETE', `/sandboxes/${json.sandboxID}`);

      await waitPoolFull(pooled);
      t0 = now();
      const b = await Sandbox.create('base', pooled.opts);
      const tc = ms(t0);
      const r = await b.commands.run('echo hi');
      s.hitFirst.push(ms(t0));
      s.hitRun.push(ms(t0) - tc);
      if (r.stdout !== 'hi\n') throw new Error('unexpected output');
      await b.kill();
      hitSamples += 3;

      await waitPoolFull(pooled);
      lastCreateTiming = null;
      t0 = now();
      const c = await Sandbox.create('base', plain.opts);
      s.missClient.push(ms(t0));
      s.missServer.push(lastCreateTiming);
      await c.kill();
      t0 = now();
      const d = await Sandbox.create('base', plain.opts);
      const td = ms(t0);
      const r2 = await d.commands.run('echo hi');
      s.missFirst.push(ms(t0));
      s.missRun.push(ms(t0) - td);
      if (r2.stdout !== 'hi\n') throw new Error('unexpected output');
      await d.kill();

      s.bwrap.push(await untilOutput(bwrapArgv(root)));
      s.fork.push(await untilOutput(CMD, { env: { PATH: '/usr/bin:/bin', HOME: emptyHome } }));
      if (pod.argv && i < PODMAN_RUNS) s.podman.push(await untilOutput([...pod.argv, ...CMD]));
    }
    const hits = (await metric(pooled, 'hutch_warm_pool_hits_total')) - hits0;
    note(`warm pool hits: ${hits} of ${hitSamples} creates on the pooled server`);

    const p = (k, q = 0.5) => pct(s[k], q);
    const peerPod = pod.argv ? p('podman') : null, peerPod99 = pod.argv ? p('podman', 0.99) : null;
    const bw = 'bwrap bash -l -c "echo hi", spawn to output';
    row(`create from a warm pool, server side (Server-Timing) p50 [${hits}/${hitSamples} hits]`, 'ms', p('hitServer'), p('missServer'),
      'same, server without a pool (miss)', '< 2 ms');
    row('create from a warm pool, server side p99', 'ms', p('hitServer', 0.99), p('missServer', 0.99), 'same, miss', '-');
    row('Sandbox.create() from a warm pool p50 (client-visible)', 'ms', p('hitClient'), p('missClient'), 'same, miss', '< 10 ms');
    row('Sandbox.create() from a warm pool p99', 'ms', p('hitClient', 0.99), p('missClient', 0.99), 'same, miss', '-');
    row('raw POST /sandboxes from a warm pool p50 (fetch, no SDK)', 'ms', p('hitRaw'), p('hitRawServer'),
      'its Server-Timing', '-');
    row('create (pool) + first commands.run("echo hi") p50', 'ms', p('hitFirst'), p('bwrap'), bw, '< 15 ms');
    row('create (pool) + first commands.run("echo hi") p99', 'ms', p('hitFirst', 0.99), p('bwrap', 0.99), bw, '-');
    row('  of which the first commands.run p50', 'ms', p('hitRun'), p('fork'), 'fork+exec bash -l -c "echo hi" (no isolation)', '-');
    row('create (no pool) + first commands.run("echo hi") p50', 'ms', p('missFirst'), p('bwrap'), bw, '-');
    row('  of which the first commands.run p50', 'ms', p('missRun'), p('fork'), 'fork+exec (no isolation)', '-');
    row('peer: podman run --rm echo hi, spawn to output p50', 'ms', p('hitFirst'), peerPod, podName, '-');
    row('peer: podman run --rm echo hi p99', 'ms', p('hitFirst', 0.99), peerPod99, podName, '-');
    row('floor: fork+exec bash -l -c "echo hi" p50', 'ms', p('hitFirst'), p('fork'), 'fork+exec (no isolation)', '-');

    // ---- 3: sustained creates ----
    const createKill = (h) => async () => (await Sandbox.create('base', h.opts)).kill();
    for (const c of [8, 32]) {
      await waitPoolFull(pooled, 20000);
      const h0 = await metric(pooled, 'hutch_warm_pool_hits_total');
      const withPool = await sustained(c, createKill(pooled));
      const h1 = await metric(pooled, 'hutch_warm_pool_hits_total');
      await waitPoolFull(pooled, 20000);
      const noPool = (await sustained(c, createKill(plain))).rate;
      const bwrapRate = (await sustained(c, () => untilOutput(bwrapArgv(root)))).rate;
      row(`sustained create+kill/s, concurrency ${c}, --warm-pool ${POOL} [${h1 - h0}/${withPool.done} hits]`, 'per s', withPool.rate, bwrapRate,
        'bwrap runs/s, same concurrency', '-');
      row(`sustained create+kill/s, concurrency ${c}, no pool`, 'per s', noPool, bwrapRate, 'bwrap runs/s, same concurrency', '-');
    }
    // The pooled and plain servers go before the pause benchmark: it wants the machine quiet.
    await stopServers(servers);

    // ---- 4: pause and resume ----
    const h = await startHutch(['--default-memory-mb', '1024']);
    servers.push(h);
    const cycle = async (sbx, memory) => {
      let t0 = now();
      await api(h, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, memory ? {} : { memory: false });
      const tp = ms(t0);
      t0 = now();
      const { res } = await api(h, 'POST', `/sandboxes/${sbx.sandboxId}/connect`, { timeout: 300 });
      const tr = ms(t0);
      if (res.status !== 201) throw new Error(`connect answered ${res.status}, not 201 (resumed)`);
      return [tp, tr];
    };
    // Floor of saving 100 MiB, interleaved with hutch's pauses: a copy from a tmpfs to the
    // state directory's disk (no fsync, as hutch's layer export does none).
    const floor = [];
    const src = `/dev/shm/hutch-bench-100m-${process.pid}`;
    const dst = path.join(path.dirname(h.stateDir), `hutch-bench-copy-${process.pid}`);
    tmpFiles.push(src, dst);
    execFileSync('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=100', 'status=none']);
    const copyFloor = () => {
      const t0 = now();
      fs.copyFileSync(src, dst);
      floor.push(ms(t0));
      fs.rmSync(dst);
    };
    const write = async (sbx, size) => {
      if (size) await sbx.commands.run(`dd if=/dev/urandom of=/home/user/big bs=1M count=${size} status=none`);
    };
    // Untimed: it runs again, and what it wrote is there.
    const check = async (sbx, size) => {
      const r = await sbx.commands.run('stat -c %s /home/user/big 2>/dev/null || echo none');
      if (r.stdout.trim() !== (size ? String(size * 1048576) : 'none')) throw new Error(`after resume: ${r.stdout}`);
    };
    const results = {};
    for (const size of [100, 0]) {
      // Memory mode: one sandbox, cycle after cycle; its writable layer keeps what was written,
      // so every pause saves all of it again.
      let pause = [], resume = [];
      const sbx = await Sandbox.create('base', h.opts);
      await write(sbx, size);
      for (let i = 0; i < CYCLES; i++) {
        const [tp, tr] = await cycle(sbx, true);
        pause.push(tp);
        resume.push(tr);
        await check(sbx, size);
        if (size) copyFloor();
      }
      await sbx.kill();
      results[`${size}-true`] = { pause, resume };
      // Filesystem mode: a fresh sandbox each cycle. Once resumed from disk, what it wrote lies
      // in a saved layer below an empty writable one, and a next pause would save nothing.
      pause = [];
      resume = [];
      for (let i = 0; i < CYCLES; i++) {
        const x = await Sandbox.create('base', h.opts);
        await write(x, size);
        const [tp, tr] = await cycle(x, false);
        pause.push(tp);
        resume.push(tr);
        await check(x, size);
        await x.kill();
      }
      results[`${size}-false`] = { pause, resume };
    }

    // Peers: a container with the same data written, paused by the freezer (memory mode) or
    // stopped and started again (its processes gone, its filesystem kept on disk).
    const peer = {};
    if (pod.argv) {
      const name = `hutch-bench-${process.pid}`;
      const base = pod.argv.filter((a) => a !== '--rm').slice(2, -1); // options between `run` and the image
      containers.push(name);
      await run(PODMAN, ['run', '-d', '--name', name, ...base, IMAGE, '/bin/sleep', 'infinity']);
      await run(PODMAN, ['exec', name, 'sh', '-c', 'mkdir -p /home/user && dd if=/dev/urandom of=/home/user/big bs=1M count=100 status=none']);
      const pairs = { true: ['pause', 'unpause'], false: ['stop', 'start'] };
      for (const memory of [true, false]) {
        const a = [], b = [];
        for (let i = 0; i < CYCLES; i++) {
          const [x, y] = pairs[memory];
          let t0 = now();
          await run(PODMAN, x === 'stop' ? ['stop', '-t', '0', name] : [x, name]);
          a.push(ms(t0));
          t0 = now();
          await run(PODMAN, [y, name]);
          b.push(ms(t0));
        }
        peer[memory] = { pause: a, resume: b };
      }
    }
    const podPeer = (memory, k, q) => (peer[memory] ? pct(peer[memory][k], q) : null);
    const podLabel = (memory) => (pod.argv ? (memory ? `podman pause / unpause (${pod.runtime}, freezer)` : `podman stop -t 0 / start (${pod.runtime})`)
      : `podman: cannot run here`);
    for (const size of [100, 0]) {
      for (const memory of [true, false]) {
        const r = results[`${size}-${memory}`];
        const what = `${memory ? 'memory' : 'filesystem'} mode, ${size ? '100 MiB written' : 'empty'}`;
        row(`pause, ${what} p50 [n=${CYCLES}]`, 'ms', pct(r.pause, 0.5), podPeer(memory, 'pause', 0.5), podLabel(memory), '-');
        row(`pause, ${what} p99`, 'ms', pct(r.pause, 0.99), podPeer(memory, 'pause', 0.99), podLabel(memory), '-');
        row(`resume (connect), ${what} p50`, 'ms', pct(r.resume, 0.5), podPeer(memory, 'resume', 0.5), podLabel(memory), '-');
        row(`resume (connect), ${what} p99`, 'ms', pct(r.resume, 0.99), podPeer(memory, 'resume', 0.99), podLabel(memory), '-');
      }
    }
    row('pause, memory mode, 100 MiB p50 vs. the copy floor', 'ms', pct(results['100-true'].pause, 0.5), pct(floor, 0.5),
      'copy 100 MiB tmpfs -> same disk', '-');
    note(`load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    await stopServers(servers);
    if (pod.why !== 'not tried') await podmanCleanup(containers);
    for (const d of [root, emptyHome, ...tmpFiles]) if (d) fs.rmSync(d, { recursive: true, force: true });
  }
}

async function stopServers(servers) {
  while (servers.length) {
    const { leftovers } = await servers.pop().stop();
    if (leftovers.length) note(`leftover sandbox processes: ${leftovers}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
