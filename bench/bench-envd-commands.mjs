#!/usr/bin/env node
// commands.run("true") through the official SDK against a standalone envd, beside spawning
// the same `/bin/bash -l -c true` directly from Node: the difference is what envd (and the
// Connect round trip over loopback) adds. Goal (issue 3): under 1 ms at the median.
// Then a command's output in bulk (OUTPUT_MIB of `head -c ... /dev/zero` through commands.run,
// base64 in envd's Connect stream, decoded by the SDK) beside reading the same command's stdout
// from a direct spawn, and the CPU time envd itself spends per MiB of it (its base64 and
// framing: decision 0008).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEnvd } from '../tests/sdk/lib/envd.mjs';

const WARMUP = 20;
const RUNS = Number(process.env.BENCH_RUNS || 200);
const OUTPUT_MIB = 64;
const OUTPUT_ROUNDS = 3;
const OUTPUT_CMD = `head -c ${OUTPUT_MIB * 1048576} /dev/zero`;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// Both sides get the same empty HOME, so that the machine's own login profile (which may
// start slow tools) is not part of either figure.
const HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-bench-home-'));

function spawnOnce() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn('/bin/bash', ['-l', '-c', 'true'], { stdio: 'ignore', env: { ...process.env, HOME } });
    c.on('error', reject);
    c.on('exit', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
  });
}

function spawnOutput() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let n = 0;
    const c = spawn('/bin/bash', ['-l', '-c', OUTPUT_CMD], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, HOME } });
    c.stdout.on('data', (d) => (n += d.length));
    c.on('error', reject);
    c.on('exit', () => {
      if (n !== OUTPUT_MIB * 1048576) reject(new Error(`direct spawn read ${n} bytes`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

// User + system CPU time of a process so far, in ms (USER_HZ 100).
function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function main() {
  const envd = await startEnvd();
  try {
    const sbx = await envd.sandbox();
    const sdk = [];
    const direct = [];
    for (let i = 0; i < WARMUP; i++) {
      await sbx.commands.run('true', { envs: { HOME } });
      await spawnOnce();
    }
    // Interleave so that both see the same machine state.
    for (let i = 0; i < RUNS; i++) {
      const t0 = process.hrtime.bigint();
      await sbx.commands.run('true', { envs: { HOME } });
      sdk.push(Number(process.hrtime.bigint() - t0) / 1e6);
      direct.push(await spawnOnce());
    }
    const a = median(sdk);
    const b = median(direct);
    const row = (name, hutch, peer, peerName, goal) =>
      console.log(JSON.stringify({ name, unit: 'ms', hutch, peer, peer_name: peerName, goal }));
    row('commands.run("true") p50', a, b, 'spawn bash -l -c true', 'envd adds < 1 ms at p50');
    row('envd overhead p50 (difference)', a - b, 0, '-', '< 1 ms');
    // The same from each round's own pair (an SDK run and a direct spawn side by side), which
    // cancels the machine's slower and faster moments: steadier on a shared VM.
    row('envd overhead, median of paired differences', median(sdk.map((x, i) => x - direct[i])), 0, '-', '< 1 ms');

    const outSdk = [];
    const outDirect = [];
    let envdCpu = 0;
    for (let i = 0; i < OUTPUT_ROUNDS; i++) {
      const c0 = cpuMs(envd.child.pid);
      const t0 = process.hrtime.bigint();
      const r = await sbx.commands.run(OUTPUT_CMD, { envs: { HOME }, timeoutMs: 120000 });
      outSdk.push(Number(process.hrtime.bigint() - t0) / 1e6);
      envdCpu += cpuMs(envd.child.pid) - c0;
      if (r.stdout.length !== OUTPUT_MIB * 1048576) throw new Error(`commands.run returned ${r.stdout.length} bytes`);
      outDirect.push(await spawnOutput());
    }
    const mibps = (ms) => OUTPUT_MIB / (ms / 1000);
    console.log(JSON.stringify({ name: `command output, ${OUTPUT_MIB} MiB through commands.run, median of ${OUTPUT_ROUNDS}`,
      unit: 'MiB/s', hutch: mibps(median(outSdk)), peer: mibps(median(outDirect)), peer_name: 'stdout of a direct spawn',
      goal: '-', lower_is_better: false }));
    console.log(JSON.stringify({ name: 'envd CPU per MiB of command output (its base64 and framing)', unit: 'ms',
      hutch: envdCpu / (OUTPUT_ROUNDS * OUTPUT_MIB), peer: null, peer_name: '-', goal: '-' }));
  } finally {
    await envd.stop();
    fs.rmSync(HOME, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
