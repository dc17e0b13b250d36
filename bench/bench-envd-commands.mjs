#!/usr/bin/env node
// commands.run("true") through the official SDK against a standalone envd, beside spawning
// the same `/bin/bash -l -c true` directly from Node: the difference is what envd (and the
// Connect round trip over loopback) adds. Goal (issue 3): under 1 ms at the median.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEnvd } from '../tests/sdk/lib/envd.mjs';

const WARMUP = 20;
const RUNS = Number(process.env.BENCH_RUNS || 200);

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
  } finally {
    await envd.stop();
    fs.rmSync(HOME, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
