// Starts a real envd standalone on a free loopback port for one test file, and gives the
// official SDK's debug-mode Sandbox pointed at it (debug mode makes no control-plane call).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Sandbox } from 'e2b';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const buildDir = process.env.HUTCH_BUILD_DIR
  ? path.resolve(process.env.HUTCH_BUILD_DIR)
  : path.join(repoRoot, 'build');
export const envdPath = path.join(buildDir, 'bin', 'envd');

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

async function waitHealthy(url, child, deadlineMs) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`envd exited early with ${child.exitCode}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 204) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > end) throw new Error('envd did not become healthy');
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Starts envd; returns { url, port, child, stop(), sandbox(opts) }.
// extraArgs are passed to envd after --listen.
export async function startEnvd(extraArgs = []) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = path.join(os.tmpdir(), `envd-${port}.log`);
  const log = fs.openSync(logPath, 'w');
  // The commands envd runs are login shells of the host's users. root's real home on a
  // development machine sources tools (pyenv) whose lock files a SIGKILL in a kill test can leave
  // behind, stalling every later shell for a minute. envd runs in its own mount namespace where
  // /root is an empty directory, so the tests see the same shells on every machine.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'envd-root-'));
  const child = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
      'mount --bind "$1" /root && shift && exec "$@"', 'sh', home, envdPath, '--listen', `127.0.0.1:${port}`,
      ...extraArgs],
    { stdio: ['ignore', log, log] }
  );
  fs.closeSync(log);
  child.on('exit', () => fs.rmSync(home, { recursive: true, force: true }));
  await waitHealthy(url, child, 10000);
  return {
    url,
    port,
    child,
    logPath,
    home, // what envd and its commands see as /root
    async sandbox(opts = {}) {
      return Sandbox.create({ debug: true, sandboxUrl: url, ...opts });
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}
