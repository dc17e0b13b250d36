// envd's plain HTTP side through the official SDK (debug mode): health, and the access token
// (debug mode sends none, so a token-protected envd must refuse RPCs but keep /health open).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { AuthenticationError } from 'e2b';
import { startEnvd } from './lib/envd.mjs';

const started = [];
after(async () => {
  for (const e of started) await e.stop();
});

test('isRunning is true against a live envd', async () => {
  const envd = await startEnvd();
  started.push(envd);
  const sbx = await envd.sandbox();
  assert.equal(await sbx.isRunning(), true);
  const r = await sbx.commands.run('echo up');
  assert.equal(r.stdout, 'up\n');
});

test('with an access token set, RPCs without it fail with AuthenticationError; /health stays open', async () => {
  const envd = await startEnvd(['--access-token', 'sdk-secret']);
  started.push(envd);
  const sbx = await envd.sandbox();
  assert.equal(await sbx.isRunning(), true);
  await assert.rejects(sbx.commands.list(), (e) => {
    assert.ok(e instanceof AuthenticationError, `got ${e}`);
    return true;
  });
  await assert.rejects(sbx.commands.run('echo never'), (e) => {
    assert.ok(e instanceof AuthenticationError, `got ${e}`);
    return true;
  });
  const res = await fetch(`${envd.url}/process.Process/List`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Access-Token': 'sdk-secret' },
    body: '{}',
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { processes: [] });
});
