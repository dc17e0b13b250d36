#!/usr/bin/env node
// The code interpreter (issue 7's goals), on a real `hutch serve` with the template
// `code-interpreter-v1` (base + interpd on 49999, its python kernel preloaded with numpy,
// pandas and matplotlib), each figure beside a peer measured in the same run:
// 1. `runCode("1+1")` round trip through the gateway with the official @e2b/code-interpreter
//    SDK, p50/p99 (goal p50 < 5 ms), beside the same kernel (Debian's ipykernel) driven by
//    Debian's jupyter_client (execute, then wait for the reply and idle; timed in Python), and
//    beside a standalone interpd on the host reached with a plain POST /execute (no gateway).
//    The three alternate, in rounds, so that the machine's noise falls on all of them.
// 2. The first `runCode` that uses pandas right after `Sandbox.create()` from a warm pool
//    (`--pool-memory-mb 2048`, sized by demand: a few creates first, then each sample waits
//    until /metrics shows a pooled sandbox), p50 (goal < 30 ms), beside a fresh
//    `/usr/bin/python3 -c 'import pandas'` and beside the same create without a pool.
// 3. Host memory per sandbox with an idle python kernel, at 10 and at BENCH_CI_SANDBOXES (50)
//    sandboxes: the PSS of every process in each sandbox's cgroup, summed, and the sandbox
//    cgroup's charge (memory.usage_in_bytes, cgroup v1: includes its tmpfs writable layer and
//    kernel memory), beside one plain `python3 -m ipykernel_launcher` on the host with the
//    same imports (its PSS, measured while no other kernel runs). Goal < 15 MiB PSS at 50.
//    Then the same with `hutch serve --kernel-memory-merge` where the kernel has KSM (Linux
//    6.4): KSM is turned on for the run (pages_to_scan BENCH_KSM_PAGES, default 1000, every
//    20 ms; the host's settings are put back after), each checkpoint waits until a full scan
//    merges nothing new, and ksmd's CPU time is reported while it merges and once it has.
//
// Never asserts speed. BENCH_RUNS (round trips per side, default 300), BENCH_POOL_RUNS
// (default 10), BENCH_CI_SANDBOXES (default 50), BENCH_CI_CONCURRENCY (creates at once, 4).
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../tests/sdk/node_modules/@e2b/code-interpreter/dist/index.mjs';
import { startHutch, processesOf } from '../tests/sdk/lib/hutch.mjs';
import { buildDir, freePort } from '../tests/sdk/lib/envd.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.BENCH_RUNS || 300);
const ROUNDS = 3;
const POOL_RUNS = Number(process.env.BENCH_POOL_RUNS || 10);
const NOPOOL_RUNS = Math.max(3, Math.round(POOL_RUNS / 2));
const SANDBOXES = Number(process.env.BENCH_CI_SANDBOXES || 50);
const CONCURRENCY = Number(process.env.BENCH_CI_CONCURRENCY || 4);
const TEMPLATE = 'code-interpreter-v1';
const PRELOAD = 'import numpy, pandas, matplotlib, matplotlib.pyplot'; // as the template's interpd does
const PANDAS = 'import pandas as pd; pd.DataFrame({"a":[1]}).shape';
const MiB = 1048576;
// IPython saves every execution to its history database (SQLite) under IPYTHONDIR; in a
// sandbox that is the home directory on the tmpfs writable layer. The host peers get a fresh
// one on a tmpfs too, so that the host's disk is not what they measure.
const IPYTHONDIR = fs.mkdtempSync('/dev/shm/bench-interpd-ipython-');

const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] : null);
const now = () => process.hrtime.bigint();
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const row = (name, unit, hutch, peer, peer_name, goal) =>
  console.log(JSON.stringify({ name, unit, hutch, peer, peer_name, goal, lower_is_better: true }));
const note = (s) => console.error(`bench-interpd: ${s}`);
const f1 = (x) => (x === null || x === undefined ? '-' : x.toFixed(x < 10 ? 2 : 1));

// ---- memory ----------------------------------------------------------------------------

// smaps_rollup fields of one process, in bytes (null when it is gone).
function rollup(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const out = {};
    for (const m of text.matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1]] = Number(m[2]) * 1024;
    return out;
  } catch {
    return null;
  }
}

function cmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

// The memory cgroup directory of a process: the v1 memory hierarchy's where there is one (this
// project's machines), else the v2 hierarchy's.
function memoryCgroup(pid) {
  const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => /^\d+:memory:/.test(l));
  if (v1) return path.join('/sys/fs/cgroup/memory', v1.split(':').slice(2).join(':'));
  const v2 = lines.find((l) => l.startsWith('0::'));
  return v2 ? path.join('/sys/fs/cgroup', v2.slice(3)) : null;
}

// The cgroup's charge, and its memory.stat in v1's names (rss: anonymous, cache: page cache,
// shmem: tmpfs and shared memory) with the kernel memory apart.
function cgroupStat(dir) {
  const num = (f) => Number(fs.readFileSync(path.join(dir, f), 'utf8').trim());
  const stat = {};
  for (const l of fs.readFileSync(path.join(dir, 'memory.stat'), 'utf8').split('\n')) {
    const [k, v] = l.split(' ');
    if (k && !k.startsWith('total_')) stat[k] = Number(v);
  }
  if (fs.existsSync(path.join(dir, 'memory.current'))) // v2
    return { usage: num('memory.current'), kmem: stat.kernel ?? null, stat: { rss: stat.anon, cache: stat.file, shmem: stat.shmem } };
  let kmem = null;
  try {
    kmem = num('memory.kmem.usage_in_bytes');
  } catch {
    // no kmem accounting
  }
  return { usage: num('memory.usage_in_bytes'), kmem, stat };
}

// Every sandbox of the hutch instance at stateDir: its processes' smaps_rollup summed, and its
// memory cgroup's charge. Keys: the sandbox id (the cgroup's name).
function sandboxMemory(stateDir) {
  const by = new Map();
  for (const pid of processesOf(stateDir)) {
    let dir;
    try {
      dir = memoryCgroup(pid);
    } catch {
      continue; // gone
    }
    const r = rollup(pid);
    if (!dir || !r) continue;
    const id = path.basename(dir);
    if (!by.has(id)) by.set(id, { dir, pss: 0, pssAnon: 0, pssFile: 0, pssShmem: 0, rss: 0, kernelPss: 0, procs: 0, byName: {} });
    const e = by.get(id);
    const argv = cmdline(pid);
    const a0 = argv.indexOf('--argv0');
    // A kernel is an ipykernel_launcher of interpd's, or a child of the kernel fork server.
    const isKernel = argv.includes('ipykernel_launcher') || argv[0] === 'kernel-forkserver';
    const name = isKernel ? 'kernel' : path.basename(a0 >= 0 ? argv[a0 + 1] : argv[0] ?? '?');
    e.byName[name] = (e.byName[name] ?? 0) + r.Pss;
    e.pss += r.Pss;
    e.pssAnon += r.Pss_Anon ?? 0;
    e.pssFile += r.Pss_File ?? 0;
    e.pssShmem += r.Pss_Shmem ?? 0;
    e.rss += r.Rss;
    e.procs++;
    if (name === 'kernel') e.kernelPss += r.Pss;
  }
  for (const e of by.values()) Object.assign(e, cgroupStat(e.dir));
  return by;
}

// The kernel fork server of a hutch instance (its child from a memfd copy of
// kernel-forkserver): its PSS is its share of the pages it shares with the kernels.
function forkServerPss(hutch) {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const ppid = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === hutch.child.pid && fs.readlinkSync(`/proc/${pid}/exe`).startsWith('/memfd:kernel-forkserver'))
        return rollup(Number(pid))?.Pss ?? 0;
    } catch {
      // gone meanwhile
    }
  }
  return 0;
}

function memoryReport(hutch, n) {
  const m = [...sandboxMemory(hutch.stateDir).values()];
  const avg = (f) => m.reduce((s, e) => s + f(e), 0) / m.length / MiB;
  // Its share, spread over the sandboxes that use it: part of what each sandbox costs.
  const server = forkServerPss(hutch) / MiB;
  const r = {
    sandboxes: m.length,
    server: server / m.length,
    procs: avg((e) => e.procs) * MiB,
    pss: avg((e) => e.pss) + server / m.length,
    kernelPss: avg((e) => e.kernelPss),
    pssAnon: avg((e) => e.pssAnon),
    pssFile: avg((e) => e.pssFile),
    pssShmem: avg((e) => e.pssShmem),
    rss: avg((e) => e.rss),
    usage: avg((e) => e.usage),
    kmem: avg((e) => e.kmem ?? 0),
    anon: avg((e) => e.stat.rss ?? 0),
    cache: avg((e) => e.stat.cache ?? 0),
    shmem: avg((e) => e.stat.shmem ?? 0),
  };
  if (r.sandboxes !== n) throw new Error(`found ${r.sandboxes} sandboxes' processes, expected ${n}`);
  const names = [...new Set(m.flatMap((e) => Object.keys(e.byName)))].sort();
  note(`at ${n} sandboxes, PSS per sandbox by process (MiB): ` +
    names.map((k) => `${k} ${f1(avg((e) => e.byName[k] ?? 0))}`).join(', '));
  if (server) note(`at ${n} sandboxes, the kernel fork server's own PSS: ${f1(server)} MiB, ${f1(r.server)} per sandbox`);
  note(`at ${n} sandboxes, per sandbox (MiB): PSS ${f1(r.pss)} (kernel ${f1(r.kernelPss)}; anon ${f1(r.pssAnon)}, ` +
    `file ${f1(r.pssFile)}, shmem ${f1(r.pssShmem)}; ${f1(r.procs)} processes, RSS ${f1(r.rss)}); cgroup charge ` +
    `${f1(r.usage)} (anon ${f1(r.anon)}, page cache ${f1(r.cache)} of which shmem/tmpfs ${f1(r.shmem)}, kernel ${f1(r.kmem)})`);
  return r;
}

// ---- peers -----------------------------------------------------------------------------

// The jupyter_client peer (bench/lib/jupyter-client-peer.py), driven over its stdin/stdout.
async function startJupyterPeer() {
  const child = spawn('/usr/bin/python3', [path.join(here, 'lib/jupyter-client-peer.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, IPYTHONDIR },
  });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the jupyter_client peer exited');
    return JSON.parse(value);
  };
  const { pid } = await next();
  return {
    pid,
    async run(n, code) {
      child.stdin.write(`run ${n} ${code}\n`);
      return (await next()).samples;
    },
    async stop() {
      if (child.exitCode === null) {
        child.stdin.end('quit\n');
        await once(child, 'exit');
      }
    },
  };
}

function childrenOf(ppid) {
  const out = [];
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

// A standalone interpd on the host (its kernel preloaded as the template's), reached directly.
async function startInterpd() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = path.join(os.tmpdir(), `bench-interpd-${process.pid}.log`);
  const log = fs.openSync(logPath, 'w');
  const child = spawn(path.join(buildDir, 'bin', 'interpd'), ['--listen', `127.0.0.1:${port}`, '--preload', PRELOAD], {
    stdio: ['ignore', log, log],
    env: { ...process.env, E2B_LOCAL: 'true', IPYTHONDIR },
  });
  fs.closeSync(log);
  const end = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`interpd exited with ${child.exitCode}: ${fs.readFileSync(logPath, 'utf8')}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > end) throw new Error('interpd did not become healthy');
    await sleep(20);
  }
  const kernels = childrenOf(child.pid);
  return {
    url,
    async execute(code) {
      const t0 = now();
      const res = await fetch(`${url}/execute`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ code }),
      });
      const text = await res.text();
      const t = ms(t0);
      if (res.status !== 200 || !text.includes('end_of_execution') || !text.includes('"text":"2"'))
        throw new Error(`interpd: ${res.status} ${text}`);
      return t;
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
        fs.rmSync(logPath, { force: true });
      }
      for (const k of kernels) {
        try {
          process.kill(k, 0);
          note(`interpd left its kernel ${k} running; killing it`);
          process.kill(k, 'SIGKILL');
        } catch {
          // gone, as it should be
        }
      }
    },
  };
}

async function pythonImportPandas(runs) {
  try {
    const out = path.join(os.tmpdir(), `bench-interpd-hyperfine-${process.pid}.json`);
    await run('hyperfine', ['-N', '--warmup', '2', '--runs', String(runs), '--export-json', out,
      "/usr/bin/python3 -c 'import pandas'"], { maxBuffer: 1 << 24 });
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(out, { force: true });
    return { p50: j.results[0].median * 1000, how: 'hyperfine' };
  } catch (e) {
    note(`hyperfine unavailable (${String(e.message).split('\n')[0]}); timing python3 myself`);
    const xs = [];
    for (let i = 0; i < runs + 2; i++) {
      const t0 = now();
      await run('/usr/bin/python3', ['-c', 'import pandas']);
      if (i >= 2) xs.push(ms(t0));
    }
    return { p50: pct(xs, 0.5), how: 'spawn to exit' };
  }
}

// ---- hutch -----------------------------------------------------------------------------

async function metric(h, name) {
  const m = await (await fetch(`${h.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(m)?.[1] ?? 0);
}

const createOpts = (h) => ({ ...h.opts, requestTimeoutMs: 180000 });

// Sandbox.create() + the first runCode(PANDAS); checks the answer. Then, for reference, the
// same runCode a second time (the kernel and the connections now warm).
async function createAndPandas(h) {
  const t0 = now();
  const sbx = await Sandbox.create(TEMPLATE, createOpts(h));
  const create = ms(t0);
  const t1 = now();
  const ex = await sbx.runCode(PANDAS);
  const first = ms(t1);
  const total = ms(t0);
  if (ex.error || ex.text !== '(1, 1)') throw new Error(`runCode: ${JSON.stringify(ex.error ?? ex.text)}`);
  const t2 = now();
  await sbx.runCode(PANDAS);
  const second = ms(t2);
  await sbx.kill();
  return { create, first, total, second };
}

// Creates sandboxes of the template (CONCURRENCY at a time) up to 10 and SANDBOXES, measuring
// at each; kills them. Returns the reports by count.
async function memoryPart(hutch, label, settle = async () => {}) {
  const killList = [];
  try {
    const mem = {};
    const checkpoints = [...new Set([Math.min(10, SANDBOXES), SANDBOXES])];
    let created = 0;
    const tc = now();
    for (const target of checkpoints) {
      let next = created;
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next < target) {
          next++;
          killList.push(await Sandbox.create(TEMPLATE, createOpts(hutch)));
        }
      }));
      created = target;
      note(`${label}: ${created} sandboxes created in ${f1(ms(tc) / 1000)} s (${CONCURRENCY} at a time)`);
      await sleep(1000); // let every kernel settle into idle
      const extra = await settle(killList, target);
      mem[target] = { ...memoryReport(hutch, target), ...extra };
    }
    const tk = now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let s; (s = killList.pop());) await s.kill();
    }));
    note(`${label}: killed them in ${f1(ms(tk) / 1000)} s`);
    return mem;
  } finally {
    await Promise.all(killList.map((s) => s.kill().catch(() => {})));
  }
}

// ---- KSM (--kernel-memory-merge) ------------------------------------------------------------

const KSM = '/sys/kernel/mm/ksm';
const KSM_KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs'];
const ksmRead = (k) => Number(fs.readFileSync(`${KSM}/${k}`, 'utf8').trim());
const hasKsm = () => {
  const [major, minor] = os.release().split('.').map(Number);
  return fs.existsSync(`${KSM}/run`) && (major > 6 || (major === 6 && minor >= 4));
};

// ksmd's CPU time so far, in seconds.
function ksmdCpu() {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(ksmd)')) continue;
      const f = stat.split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ ticks
    } catch {
      // gone meanwhile
    }
  }
  return 0;
}

// Waits until a full KSM scan merged nothing new (pages_sharing moved by < 0.5%), at most 180 s.
// Returns what it took and what ksmd costs once settled (a 10 s window).
async function ksmSettle(sandboxes) {
  const t0 = now();
  const cpu0 = ksmdCpu();
  let scans = ksmRead('full_scans');
  let last = -1;
  for (const end = Date.now() + 180000; Date.now() < end;) {
    await sleep(250);
    const s = ksmRead('full_scans');
    if (s < scans + 1) continue;
    scans = s;
    const sharing = ksmRead('pages_sharing');
    if (last >= 0 && Math.abs(sharing - last) <= sharing * 0.005) break;
    last = sharing;
  }
  const settleS = ms(t0) / 1000;
  const settleCpu = ksmdCpu() - cpu0;
  const w0 = now();
  const cpu1 = ksmdCpu();
  await sleep(10000);
  const idleCpuShare = (ksmdCpu() - cpu1) / (ms(w0) / 1000);
  // A merged kernel's first execution copies back the pages it writes; then it runs as before.
  const sbx = sandboxes[0];
  const t1 = now();
  await sbx.runCode('1+1');
  const firstMs = ms(t1);
  const lat = [];
  for (let i = 0; i < 100; i++) {
    const t = now();
    await sbx.runCode('1+1');
    lat.push(ms(t));
  }
  const r = { settleS, settleCpu, idleCpuShare, firstMs, p50Ms: pct(lat, 0.5), sharing: ksmRead('pages_sharing'), shared: ksmRead('pages_shared') };
  note(`KSM settled in ${f1(settleS)} s (ksmd ${f1(settleCpu)} s of CPU; then ${f1(idleCpuShare * 100)}% of a CPU), ` +
    `pages_sharing ${r.sharing} pages_shared ${r.shared}; runCode("1+1") on a merged kernel: first ${f1(firstMs)} ms, ` +
    `then p50 ${f1(r.p50Ms)} ms`);
  return { ksm: r };
}

async function main() {
  const t00 = now();
  // The host peer's kernel first, while no other kernel runs, so that its PSS is its own.
  // Its memory after each import, to show what each library adds.
  const jp = await startJupyterPeer();
  let peerMem;
  for (const step of ['', 'import numpy', 'import pandas', 'import matplotlib, matplotlib.pyplot']) {
    if (step) await jp.run(1, step);
    peerMem = rollup(jp.pid);
    note(`plain ipykernel_launcher on the host${step ? ` after \`${step}\`` : ''}: PSS ${f1(peerMem.Pss / MiB)} MiB ` +
      `(anon ${f1(peerMem.Pss_Anon / MiB)}, file ${f1(peerMem.Pss_File / MiB)}), RSS ${f1(peerMem.Rss / MiB)} MiB`);
  }

  const ip = await startInterpd();
  const hutch = await startHutch();
  const killList = [];
  const nopool = [];
  try {
    // ---- 1. runCode("1+1") round trip --------------------------------------------------
    const sbx = await Sandbox.create(TEMPLATE, createOpts(hutch));
    killList.push(sbx);
    const sdk = [], direct = [], jupyter = [];
    for (let i = 0; i < 20; i++) {
      await sbx.runCode('1+1');
      await ip.execute('1+1');
    }
    await jp.run(20, '1+1');
    for (let round = 0; round < ROUNDS; round++) {
      const n = Math.ceil(N / ROUNDS);
      for (let i = 0; i < n; i++) {
        const t0 = now();
        const ex = await sbx.runCode('1+1');
        sdk.push(ms(t0));
        if (ex.text !== '2') throw new Error(`runCode("1+1") gave ${JSON.stringify(ex.text)}`);
      }
      for (let i = 0; i < n; i++) direct.push(await ip.execute('1+1'));
      jupyter.push(...(await jp.run(n, '1+1')));
    }
    await ip.stop();
    await jp.stop();
    await sbx.kill();
    killList.length = 0;
    row('runCode("1+1") p50, SDK through the gateway', 'ms', pct(sdk, 0.5), pct(jupyter, 0.5),
      'jupyter_client execute + idle, same ipykernel', '< 5 ms');
    row('runCode("1+1") p99, SDK through the gateway', 'ms', pct(sdk, 0.99), pct(jupyter, 0.99),
      'jupyter_client execute + idle, same ipykernel', '-');
    row('POST /execute "1+1" p50, standalone interpd on the host', 'ms', pct(direct, 0.5), pct(jupyter, 0.5),
      'jupyter_client execute + idle, same ipykernel', '-');
    row('POST /execute "1+1" p99, standalone interpd on the host', 'ms', pct(direct, 0.99), pct(jupyter, 0.99),
      'jupyter_client execute + idle, same ipykernel', '-');
    row('gateway + SDK share of runCode p50 (difference)', 'ms', pct(sdk, 0.5) - pct(direct, 0.5), 0, '-', '-');
    note(`part 1 done at ${f1(ms(t00) / 1000)} s`);

    // ---- 2 (peer). create without a pool + first runCode(pandas) ---------------------------
    for (let i = 0; i < NOPOOL_RUNS; i++) nopool.push(await createAndPandas(hutch));
    note(`part 2 without a pool done at ${f1(ms(t00) / 1000)} s`);

    // ---- 3. memory per sandbox with an idle kernel --------------------------------------------
    const mem = await memoryPart(hutch, 'kernels from the fork server');
    note(`part 3 (fork server) done at ${f1(ms(t00) / 1000)} s`);
    const own = await startHutch(['--kernel-fork-server', 'off']);
    let memOwn;
    try {
      memOwn = await memoryPart(own, 'kernels started by interpd (--kernel-fork-server off)');
    } finally {
      await own.stop();
    }
    note(`part 3 (own kernels) done at ${f1(ms(t00) / 1000)} s`);
    let memMerge = null;
    if (hasKsm()) {
      const saved = Object.fromEntries(KSM_KNOBS.map((k) => [k, ksmRead(k)]));
      const merging = await startHutch(['--kernel-memory-merge']);
      try {
        fs.writeFileSync(`${KSM}/pages_to_scan`, String(Number(process.env.BENCH_KSM_PAGES || 1000)));
        fs.writeFileSync(`${KSM}/sleep_millisecs`, '20');
        fs.writeFileSync(`${KSM}/run`, '1');
        memMerge = await memoryPart(merging, 'kernels from the fork server, --kernel-memory-merge', (sbxs) => ksmSettle(sbxs));
      } finally {
        for (const k of KSM_KNOBS) fs.writeFileSync(`${KSM}/${k}`, String(saved[k]));
        await merging.stop();
      }
      note(`part 3 (KSM) done at ${f1(ms(t00) / 1000)} s`);
    } else {
      note('part 3 (KSM) skipped: no /sys/kernel/mm/ksm or Linux < 6.4');
    }
    const peerPss = peerMem.Pss / MiB;
    for (const n of Object.keys(mem).map(Number)) {
      row(`PSS per sandbox, idle python kernel, at ${n} sandboxes (all its processes + its share of the fork server)`,
        'MiB', mem[n].pss, peerPss, 'plain ipykernel_launcher on the host, same imports (PSS)',
        n === SANDBOXES ? '< 15 MiB at 50' : '-');
      row(`  of which the python kernel, at ${n}`, 'MiB', mem[n].kernelPss, peerPss, 'same', '-');
      row(`  of which the fork server's share, at ${n}`, 'MiB', mem[n].server, 0, '-', '-');
      row(`PSS per sandbox at ${n}, --kernel-fork-server off (each sandbox's own kernel)`, 'MiB', memOwn[n].pss,
        peerPss, 'same', '-');
      row(`cgroup charge per sandbox at ${n} (memory.usage_in_bytes)`, 'MiB', mem[n].usage, peerMem.Rss / MiB,
        'plain ipykernel_launcher on the host (RSS)', '-');
      row(`cgroup charge per sandbox at ${n}, --kernel-fork-server off`, 'MiB', memOwn[n].usage, peerMem.Rss / MiB,
        'same', '-');
      if (!memMerge) continue;
      const k = memMerge[n];
      row(`PSS per sandbox at ${n}, --kernel-memory-merge (KSM)`, 'MiB', k.pss, mem[n].pss,
        'the same without it, same run', n === SANDBOXES ? '< 15 MiB at 50' : '-');
      row(`  of which the python kernel, at ${n}, --kernel-memory-merge`, 'MiB', k.kernelPss, mem[n].kernelPss, 'same', '-');
      row(`cgroup charge per sandbox at ${n}, --kernel-memory-merge`, 'MiB', k.usage, mem[n].usage, 'same', '-');
      row(`  KSM: seconds until a full scan merged nothing new, at ${n}`, 's', k.ksm.settleS, 0, '-', '-');
      row(`  KSM: ksmd CPU seconds while merging, at ${n}`, 's', k.ksm.settleCpu, 0, '-', '-');
      row(`  KSM: ksmd CPU share once settled, at ${n}`, '%', k.ksm.idleCpuShare * 100, 0, '-', '-');
      row(`  runCode("1+1") on a merged kernel, first, at ${n}`, 'ms', k.ksm.firstMs, pct(sdk, 0.5), 'part 1 p50, no KSM', '-');
      row(`  runCode("1+1") on a merged kernel, p50 of the next 100, at ${n}`, 'ms', k.ksm.p50Ms, pct(sdk, 0.5), 'part 1 p50, no KSM', '-');
    }
  } finally {
    await Promise.all(killList.map((s) => s.kill().catch(() => {})));
    await ip.stop();
    await jp.stop();
    const { leftovers } = await hutch.stop();
    if (leftovers.length) note(`leftover sandbox processes: ${leftovers}`);
  }

  // ---- 2. first runCode(pandas) after a create from a warm pool ------------------------------
  const warm = await startHutch(['--pool-memory-mb', '2048']);
  try {
    // Demand sizes the pool: a couple of creates (misses, they boot), then wait for it to fill.
    await Promise.all([0, 1].map(() => createAndPandas(warm)));
    const pooled = [];
    const hits0 = await metric(warm, 'hutch_warm_pool_hits_total');
    for (let i = 0; i < POOL_RUNS; i++) {
      const end = Date.now() + 60000;
      while ((await metric(warm, 'hutch_warm_pool_sandboxes')) < 1) {
        if (Date.now() > end) throw new Error('the warm pool did not fill');
        await sleep(20);
      }
      pooled.push(await createAndPandas(warm));
    }
    const hits = (await metric(warm, 'hutch_warm_pool_hits_total')) - hits0;
    note(`pool: ${hits} hits of ${POOL_RUNS} samples; part 2 done at ${f1(ms(t00) / 1000)} s`);
    const py = await pythonImportPandas(10);
    const p50 = (xs, k) => pct(xs.map((x) => x[k]), 0.5);
    row(`Sandbox.create() from a warm pool + first runCode(pandas) p50 (${hits}/${POOL_RUNS} hits)`, 'ms',
      p50(pooled, 'total'), py.p50, `/usr/bin/python3 -c 'import pandas' (${py.how})`, '< 30 ms');
    row('  of which the first runCode(pandas) p50', 'ms', p50(pooled, 'first'), py.p50, 'same', '-');
    row('  of which Sandbox.create() p50', 'ms', p50(pooled, 'create'), p50(nopool, 'create'), 'create without a pool', '-');
    row(`create without a pool + first runCode(pandas) p50 (n=${NOPOOL_RUNS})`, 'ms', p50(nopool, 'total'), py.p50,
      `/usr/bin/python3 -c 'import pandas' (${py.how})`, '-');
    row('  of which the first runCode(pandas) p50, no pool', 'ms', p50(nopool, 'first'), p50(pooled, 'first'),
      'the same after a pooled create', '-');
    row('second runCode(pandas) in the same sandbox p50 (pooled and not)', 'ms',
      p50([...pooled, ...nopool], 'second'), p50(pooled, 'first'), 'the first one, after a pooled create', '-');
  } finally {
    const { leftovers } = await warm.stop();
    if (leftovers.length) note(`leftover sandbox processes: ${leftovers}`);
  }
  note(`total ${f1(ms(t00) / 1000)} s`);
}

process.on('exit', () => fs.rmSync(IPYTHONDIR, { recursive: true, force: true }));

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
