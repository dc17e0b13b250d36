#!/usr/bin/env node
// hutch serve through the official SDK (issue 5's goals), each beside a peer in the same run:
// - Sandbox.create() client-visible p50/p99, and create + first commands.run("echo hi"),
//   beside bubblewrap starting an isolated `echo hi` (user, pid, net, ipc, uts namespaces).
//   Goal: client-visible create p50 < 50 ms without a warm pool.
// - Gateway overhead: Connect Start of `true` through the gateway vs. straight to envd from
//   inside the sandbox's netns. Goal: < 0.5 ms at the median.
// - Sustained creates per second (create + kill) at concurrency 1, 8, 32, beside bubblewrap
//   runs per second at the same concurrency.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox } from '../tests/sdk/node_modules/e2b/dist/index.mjs';
import { startHutch } from '../tests/sdk/lib/hutch.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.BENCH_RUNS || 40);
const SECONDS = Number(process.env.BENCH_SECONDS || 5);

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const row = (name, unit, hutch, peer, peer_name, goal) =>
  console.log(JSON.stringify({ name, unit, hutch, peer, peer_name, goal }));

const BWRAP = ['--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin',
  '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev',
  '--tmpfs', '/tmp', '/bin/echo', 'hi'];

async function bwrapOnce() {
  const t0 = process.hrtime.bigint();
  const { stdout } = await run('bwrap', BWRAP);
  if (stdout !== 'hi\n') throw new Error('bwrap: unexpected output');
  return ms(t0);
}

async function sustained(concurrency, fn) {
  const end = Date.now() + SECONDS * 1000;
  let done = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < end) {
      await fn();
      done++;
    }
  }));
  return done / (ms(t0) / 1000);
}

function envdPid(stateDir, id) {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cg = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cg.includes(`/${id}`) && cmd.startsWith('/opt/hutch/envd')) return Number(pid);
    } catch {
      // gone
    }
  }
  throw new Error('envd of the sandbox not found');
}

async function main() {
  const hutch = await startHutch();
  try {
    const opts = hutch.opts;
    for (let i = 0; i < 5; i++) await (await Sandbox.create('base', opts)).kill();

    const create = [], first = [], peer = [];
    for (let i = 0; i < N; i++) {
      let t0 = process.hrtime.bigint();
      const sbx = await Sandbox.create('base', opts);
      create.push(ms(t0));
      await sbx.kill();
      t0 = process.hrtime.bigint();
      const sbx2 = await Sandbox.create('base', opts);
      const r = await sbx2.commands.run('echo hi');
      first.push(ms(t0));
      if (r.stdout !== 'hi\n') throw new Error('unexpected output');
      await sbx2.kill();
      peer.push(await bwrapOnce());
    }
    row('Sandbox.create() p50 (client-visible)', 'ms', pct(create, 0.5), pct(peer, 0.5), 'bwrap echo hi (spawn to exit)', '< 50 ms');
    row('Sandbox.create() p99 (client-visible)', 'ms', pct(create, 0.99), pct(peer, 0.99), 'bwrap echo hi (spawn to exit)', '-');
    row('create + first commands.run("echo hi") p50', 'ms', pct(first, 0.5), pct(peer, 0.5), 'bwrap echo hi (spawn to exit)', '-');

    const sbx = await Sandbox.create('base', opts);
    const headers = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983', 'X-Access-Token': sbx.envdAccessToken ?? '' };
    const pid = envdPid(hutch.stateDir, sbx.sandboxId);
    const client = path.join(here, 'lib/connect-run.mjs');
    // Alternate the two, three rounds each, and keep the median of each side's medians: the
    // difference is small against the machine's noise.
    const gw = [], direct = [];
    for (let round = 0; round < 3; round++) {
      gw.push(JSON.parse((await run('node', [client, hutch.url, JSON.stringify(headers), '300'])).stdout).p50);
      direct.push(JSON.parse((await run('nsenter', [`--net=/proc/${pid}/ns/net`, 'node', client, 'http://127.0.0.1:49983',
        JSON.stringify({ 'X-Access-Token': headers['X-Access-Token'] }), '300'])).stdout).p50);
    }
    // Throughput: a 64 MiB download through the gateway, and from inside the netns to envd.
    await sbx.commands.run('head -c 67108864 /dev/urandom > /tmp/blob');
    const q = `/files?path=${encodeURIComponent('/tmp/blob')}`;
    const curlArgs = ['-sS', '--fail', '-o', '/dev/null', '-w', '%{time_total}', '-H', `X-Access-Token: ${headers['X-Access-Token']}`];
    const gwSecs = Number((await run('curl', [...curlArgs, '-H', `E2b-Sandbox-Id: ${sbx.sandboxId}`, '-H', 'E2b-Sandbox-Port: 49983',
      `${hutch.url}${q}`])).stdout);
    const directSecs = Number((await run('nsenter', [`--net=/proc/${pid}/ns/net`, 'curl', ...curlArgs,
      `http://127.0.0.1:49983${q}`])).stdout);
    await sbx.kill();
    row('download 64 MiB through the gateway (curl)', 'GB/s', 64 * 1048576 / gwSecs / 1e9, 64 * 1048576 / directSecs / 1e9,
      'same, straight to envd in its netns', '-');
    const g = pct(gw, 0.5), d = pct(direct, 0.5);
    row('Connect Start of `true` via gateway p50', 'ms', g, d, 'same, straight to envd in its netns', '-');
    row('gateway overhead p50 (difference)', 'ms', g - d, 0, '-', '< 0.5 ms');

    // The same creates served by a warm pool (waiting for it to refill between creates, so that
    // each measures a hand-over, not a boot).
    const warm = await startHutch(['--warm-pool', '2']);
    try {
      const pooled = async () => {
        const m = await (await fetch(`${warm.url}/metrics`)).text();
        return Number(/^hutch_warm_pool_sandboxes (\d+)/m.exec(m)?.[1] ?? 0);
      };
      const handover = [], firstWarm = [];
      for (let i = 0; i < N; i++) {
        for (let t = 0; t < 200 && (await pooled()) < 2; t++) await new Promise((r) => setTimeout(r, 10));
        let t0 = process.hrtime.bigint();
        const a = await Sandbox.create('base', warm.opts);
        handover.push(ms(t0));
        const r = await a.commands.run('echo hi');
        firstWarm.push(ms(t0));
        if (r.stdout !== 'hi\n') throw new Error('unexpected output');
        await a.kill();
      }
      row('Sandbox.create() p50 from a warm pool', 'ms', pct(handover, 0.5), pct(peer, 0.5), 'bwrap echo hi (spawn to exit)', '-');
      row('create from a warm pool + first commands.run p50', 'ms', pct(firstWarm, 0.5), pct(peer, 0.5), 'bwrap echo hi (spawn to exit)', '-');
    } finally {
      await warm.stop();
    }

    for (const c of [1, 8, 32]) {
      const hs = await sustained(c, async () => (await Sandbox.create('base', opts)).kill());
      const ps = await sustained(c, bwrapOnce);
      row(`sustained create+kill, concurrency ${c}`, 'per s', hs, ps, 'bwrap echo hi runs', '-');
    }
  } finally {
    const { leftovers } = await hutch.stop();
    if (leftovers.length) console.error(`leftover sandbox processes: ${leftovers}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
