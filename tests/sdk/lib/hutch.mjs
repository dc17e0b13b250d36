// Starts a real `hutch serve` on a free loopback port with its own state directory, and
// gives the official SDK's options pointed at it (apiUrl and sandboxUrl both its port, as
// e2b-compat 1.5 describes for local use).
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildDir, freePort } from './envd.mjs';

export const hutchPath = path.join(buildDir, 'bin', 'hutch');

// Pids in the cgroups of the instance that owns stateDir (hutch-<sha256(realpath)[:12]>): what
// its sandboxes left running.
export function processesOf(stateDir) {
  const tag = createHash('sha256').update(fs.realpathSync(stateDir)).digest('hex').slice(0, 12);
  const pids = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`/hutch-${tag}/`)) pids.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

// options.stateDir: start on the state directory of an earlier (stopped) instance instead of a
// fresh one, e.g. to check what survives a restart; the log is appended to.
export async function startHutch(extraArgs = [], options = {}) {
  const port = await freePort();
  const stateDir = options.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-sdk-'));
  const url = `http://127.0.0.1:${port}`;
  const logPath = `${stateDir}.log`;
  const log = fs.openSync(logPath, options.stateDir ? 'a' : 'w');
  const child = spawn(hutchPath, ['serve', '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, ...extraArgs], {
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const deadline = Date.now() + 15000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`hutch serve exited: ${fs.readFileSync(logPath, 'utf8')}`);
    try {
      if ((await fetch(`${url}/health`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('hutch serve did not become healthy');
    await new Promise((r) => setTimeout(r, 20));
  }
  const apiKey = execFileSync(hutchPath, ['key', 'create', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'ignore'] })
    .toString()
    .trim();
  return {
    url,
    port,
    stateDir,
    logPath,
    child,
    apiKey,
    // Options for Sandbox.create / connect / list / kill.
    opts: { apiKey, apiUrl: url, sandboxUrl: url },
    log: () => fs.readFileSync(logPath, 'utf8'),
    // keepState: leave the state directory for a next startHutch({stateDir}); signal: how the
    // server is stopped ('SIGKILL' for a crash). code is null when a signal ended it.
    async stop({ keepState = false, signal = 'SIGTERM' } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await once(child, 'exit');
      }
      const tag = createHash('sha256').update(fs.realpathSync(stateDir)).digest('hex').slice(0, 12);
      const dirs = [`/run/hutch/${tag}`, `/sys/fs/cgroup/unified/hutch-${tag}`, `/sys/fs/cgroup/hutch-${tag}`];
      for (const c of fs.existsSync('/sys/fs/cgroup') ? fs.readdirSync('/sys/fs/cgroup') : []) dirs.push(`/sys/fs/cgroup/${c}/hutch-${tag}`);
      const leftovers = [...processesOf(stateDir), ...dirs.filter((d) => fs.existsSync(d))];
      if (!keepState) fs.rmSync(stateDir, { recursive: true, force: true });
      return { code: child.exitCode, leftovers }; // processes and directories left on the host
    },
  };
}
