// commands.* of the official SDK (debug mode) against a real envd: process.Process Start,
// Connect, List, SendInput, CloseStdin, SendSignal, exit codes, users, env, cwd, timeouts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { CommandExitError, TimeoutError, InvalidArgumentError, AuthenticationError } from 'e2b';
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

// Polls cond() every 20 ms until it is true or ms pass; fails the test on timeout.
async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('run returns stdout, stderr and exit code 0', async () => {
  const r = await sbx.commands.run('echo hello; echo oops >&2');
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'hello\n');
  assert.equal(r.stderr, 'oops\n');
  assert.equal(r.error, undefined);
});

test('non-zero exit throws CommandExitError with the Go status text', async () => {
  await assert.rejects(sbx.commands.run('echo out; echo bad >&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, 3);
    assert.equal(e.error, 'exit status 3');
    assert.equal(e.stdout, 'out\n');
    assert.equal(e.stderr, 'bad\n');
    return true;
  });
});

test('large output arrives complete and in order', async () => {
  const r = await sbx.commands.run('seq 1 200000');
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 200000);
  assert.equal(lines[0], '1');
  assert.equal(lines[199999], '200000');
});

test('env vars: per-call envs and the user identity', async () => {
  const r = await sbx.commands.run('echo "$FOO|$HOME|$USER|$LOGNAME"; test -n "$PATH"', {
    envs: { FOO: 'bar baz' },
  });
  assert.equal(r.stdout, 'bar baz|/root|root|root\n');
});

test('cwd is honoured and a missing cwd is InvalidArgumentError', async () => {
  const r = await sbx.commands.run('pwd', { cwd: '/tmp' });
  assert.equal(r.stdout, '/tmp\n');
  await assert.rejects(sbx.commands.run('pwd', { cwd: '/no/such/dir' }), (e) => {
    assert.ok(e instanceof InvalidArgumentError, `got ${e}`);
    assert.match(e.message, /cwd '\/no\/such\/dir' does not exist/);
    return true;
  });
});

test('runs as root and as nobody; an unknown user is AuthenticationError', async () => {
  const root = await sbx.commands.run('id -un; id -u', { user: 'root' });
  assert.equal(root.stdout, 'root\n0\n');
  const nobody = await sbx.commands.run('id -un; id -u; echo $HOME', { user: 'nobody', cwd: '/' });
  assert.equal(nobody.stdout, 'nobody\n65534\n/nonexistent\n');
  await assert.rejects(sbx.commands.run('true', { user: 'no-such-user-hutch' }), (e) => {
    assert.ok(e instanceof AuthenticationError, `got ${e}`);
    return true;
  });
});

test('background command and wait', async () => {
  const h = await sbx.commands.run('sleep 0.2; echo done', { background: true });
  assert.ok(h.pid > 0);
  const r = await h.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'done\n');
});

test('stdin: sendStdin and closeStdin', async () => {
  const h = await sbx.commands.run('cat; echo end', { background: true, stdin: true });
  await sbx.commands.sendStdin(h.pid, 'hello\n');
  await sbx.commands.sendStdin(h.pid, new TextEncoder().encode('bytes\n'));
  await sbx.commands.closeStdin(h.pid);
  const r = await h.wait();
  assert.equal(r.stdout, 'hello\nbytes\nend\n');
});

test('stdin is /dev/null unless asked for', async () => {
  const r = await sbx.commands.run('cat; echo eof');
  assert.equal(r.stdout, 'eof\n');
});

test('kill ends a process with signal: killed; an unknown pid gives false', async () => {
  const h = await sbx.commands.run('sleep 30', { background: true });
  assert.equal(await sbx.commands.kill(h.pid), true);
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, -1);
    assert.equal(e.error, 'signal: killed');
    return true;
  });
  assert.equal(isRunning(h.pid), false);
  assert.equal(await sbx.commands.kill(h.pid), false);
  assert.equal(await sbx.commands.kill(999999), false);
});

test('list shows running processes with their config', async () => {
  const h = await sbx.commands.run('sleep 30', { background: true, envs: { X: '1' }, cwd: '/tmp' });
  const procs = await sbx.commands.list();
  const p = procs.find((x) => x.pid === h.pid);
  assert.ok(p, `pid ${h.pid} not in ${JSON.stringify(procs)}`);
  assert.equal(p.cmd, '/bin/bash');
  assert.deepEqual(p.args, ['-l', '-c', 'sleep 30']);
  assert.deepEqual(p.envs, { X: '1' });
  assert.equal(p.cwd, '/tmp');
  await sbx.commands.kill(h.pid);
  await assert.rejects(h.wait(), CommandExitError);
  const after = await sbx.commands.list();
  assert.equal(after.find((x) => x.pid === h.pid), undefined);
});

test('connect attaches a second client to a running process', async () => {
  const h = await sbx.commands.run('read x; echo "got $x"', { background: true, stdin: true });
  let seen = '';
  const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => (seen += d) });
  await sbx.commands.sendStdin(h.pid, 'ping\n');
  const [r1, r2] = await Promise.all([h.wait(), h2.wait()]);
  assert.equal(r1.stdout, 'got ping\n');
  assert.equal(r2.stdout, 'got ping\n');
  assert.equal(seen, 'got ping\n');
});

test('a process survives its client disconnecting and can be re-attached', async () => {
  const h = await sbx.commands.run('read x; echo "after $x"', { background: true, stdin: true });
  await h.disconnect();
  // Still running with nobody attached.
  const procs = await sbx.commands.list();
  assert.ok(procs.some((p) => p.pid === h.pid));
  const h2 = await sbx.commands.connect(h.pid);
  await sbx.commands.sendStdin(h.pid, 'reconnect\n');
  const r = await h2.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'after reconnect\n');
});

test('connect to an unknown pid fails', async () => {
  await assert.rejects(sbx.commands.connect(999999));
});

test('timeoutMs ends the command with TimeoutError and kills it', async () => {
  const started = Date.now();
  await assert.rejects(sbx.commands.run('sleep 10', { timeoutMs: 1000 }), (e) => {
    assert.ok(e instanceof TimeoutError, `got ${e}`);
    return true;
  });
  assert.ok(Date.now() - started < 5000);
  // envd killed it: no `sleep 10` of ours is left in the process table.
  await until(
    async () => !(await sbx.commands.list()).some((p) => p.args?.[2] === 'sleep 10'),
    5000,
    'the timed-out process to go',
  );
});

test('onStdout and onStderr get the output as it comes', async () => {
  const out = [];
  const err = [];
  const r = await sbx.commands.run('echo a; echo b >&2; echo c', {
    onStdout: (d) => out.push(d),
    onStderr: (d) => err.push(d),
  });
  assert.equal(out.join(''), 'a\nc\n');
  assert.equal(err.join(''), 'b\n');
  assert.equal(r.stdout, 'a\nc\n');
});

test('output written while nobody listens is dropped, the end is kept for a late connect', async () => {
  const marker = `/tmp/envd-sdk-${process.pid}-${Date.now()}`;
  const h = await sbx.commands.run(`echo early; read x; echo late > ${marker}`, {
    background: true,
    stdin: true,
  });
  await h.disconnect();
  await sbx.commands.sendStdin(h.pid, 'go\n');
  await until(() => fs.existsSync(marker), 5000, 'the command to finish');
  fs.rmSync(marker);
  // Finished now; a late connect still gets its end.
  await until(async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid), 5000, 'exit');
  const h2 = await sbx.commands.connect(h.pid);
  const r = await h2.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, '');
});
