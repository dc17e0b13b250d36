// pty.* of the official SDK (debug mode) against a real envd: Start with a PTY, SendInput,
// Update (resize), SendSignal, and the pty's exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CommandExitError } from 'e2b';
import { startEnvd } from './lib/envd.mjs';

let envd;
let sbx;

before(async () => {
  envd = await startEnvd();
  sbx = await envd.sandbox();
});

after(async () => {
  await envd?.stop();
});

// A pty whose output is collected; waitFor(re) resolves when the output matches.
async function openPty(opts = {}) {
  let out = '';
  const waiters = [];
  const dec = new TextDecoder();
  const h = await sbx.pty.create({
    cols: 80,
    rows: 24,
    onData: (d) => {
      out += dec.decode(d, { stream: true });
      for (const w of [...waiters]) {
        if (w.re.test(out)) {
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(out);
        }
      }
    },
    ...opts,
  });
  const waitFor = (re, ms = 10000) =>
    new Promise((resolve, reject) => {
      if (re.test(out)) return resolve(out);
      const w = { re, resolve };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`pty output did not match ${re} within ${ms} ms; got ${JSON.stringify(out)}`));
      }, ms);
      waiters.push(w);
    });
  return { h, waitFor, output: () => out };
}

const enc = (s) => new TextEncoder().encode(s);

test('pty runs an interactive shell that answers input', async () => {
  const { h, waitFor } = await openPty();
  assert.ok(h.pid > 0);
  await sbx.pty.sendInput(h.pid, enc('echo "sum=$((40+2))"; tty\n'));
  const out = await waitFor(/sum=42[\s\S]*\/dev\/pts\/\d+/);
  assert.match(out, /sum=42/);
  await sbx.pty.sendInput(h.pid, enc('exit 0\n'));
  const r = await h.wait();
  assert.equal(r.exitCode, 0);
});

test('pty starts with the requested size and resize changes it', async () => {
  const { h, waitFor } = await openPty({ cols: 91, rows: 33 });
  await sbx.pty.sendInput(h.pid, enc('stty size\n'));
  await waitFor(/33 91/);
  await sbx.pty.resize(h.pid, { cols: 120, rows: 40 });
  await sbx.pty.sendInput(h.pid, enc('stty size\n'));
  await waitFor(/40 120/);
  await sbx.pty.sendInput(h.pid, enc('exit\n'));
  await h.wait();
});

test('pty gets TERM and the requested envs', async () => {
  const { h, waitFor } = await openPty({ envs: { PTY_TEST: 'yes' } });
  await sbx.pty.sendInput(h.pid, enc('echo "T=$TERM P=$PTY_TEST"\n'));
  await waitFor(/T=xterm-256color P=yes/);
  await sbx.pty.sendInput(h.pid, enc('exit\n'));
  await h.wait();
});

test('pty kill ends it with signal: killed', async () => {
  const { h, waitFor } = await openPty();
  await sbx.pty.sendInput(h.pid, enc('echo ready\n'));
  await waitFor(/ready/);
  assert.equal(await sbx.pty.kill(h.pid), true);
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, -1);
    assert.equal(e.error, 'signal: killed');
    return true;
  });
  assert.equal(await sbx.pty.kill(h.pid), false);
});

test('exit status of the shell comes back', async () => {
  const { h } = await openPty();
  await sbx.pty.sendInput(h.pid, enc('exit 7\n'));
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, 7);
    return true;
  });
});

test('Ctrl-D ends the shell', async () => {
  const { h, waitFor } = await openPty();
  // Wait for the prompt after the command's output: readline must be reading when ^D comes.
  await sbx.pty.sendInput(h.pid, enc('echo "$((6*7))x"\n'));
  await waitFor(/42x[\s\S]*# $/);
  await sbx.pty.sendInput(h.pid, new Uint8Array([4]));
  const r = await h.wait();
  assert.equal(r.exitCode, 0);
});

test('a pty runs as the requested user, owning its terminal', async () => {
  const { h, waitFor } = await openPty({ user: 'nobody', cwd: '/' });
  await sbx.pty.sendInput(h.pid, enc('echo "who=$(id -un) owner=$(stat -c %U $(tty))"\n'));
  await waitFor(/who=nobody owner=nobody/);
  await sbx.pty.sendInput(h.pid, enc('exit\n'));
  assert.equal((await h.wait()).exitCode, 0);
});
