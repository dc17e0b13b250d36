// Access and identity for files: the access token, signed upload/download URLs (the SDK's own
// uploadUrl/downloadUrl, plus expired and tampered signatures computed the SDK's way), and
// operations as another user (`nobody`) bounded by that user's permissions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Sandbox, AuthenticationError } from 'e2b';
import { startEnvd } from './lib/envd.mjs';
import { tempDir, removeDir, stopEnvd } from './lib/fsutil.mjs';

const TOKEN = crypto.randomBytes(16).toString('hex');
let envd;
let plain;
let envdNoToken;
let sbx; // knows the token
let anon; // does not
let dir;

// The SDK's getSignature(): v1_ + base64(sha256(path:op:user:token[:exp])) without padding.
function signature(p, op, user, exp) {
  const raw = exp === undefined ? `${p}:${op}:${user}:${TOKEN}` : `${p}:${op}:${user}:${TOKEN}:${exp}`;
  return 'v1_' + crypto.createHash('sha256').update(raw).digest('base64').replace(/=+$/, '');
}

before(async () => {
  envd = await startEnvd(['--access-token', TOKEN]);
  envdNoToken = await startEnvd();
  // Debug mode gives no token to the SDK; a sandbox built with one is what create() returns
  // for a secured sandbox.
  sbx = new Sandbox({
    sandboxId: 'debug_sandbox_id',
    envdVersion: '0.6.13',
    envdAccessToken: TOKEN,
    debug: true,
    sandboxUrl: envd.url,
  });
  anon = await envd.sandbox();
  plain = await envdNoToken.sandbox();
  dir = tempDir('hutch-auth-');
});

after(async () => {
  if (dir) removeDir(dir);
  if (envd) await stopEnvd(envd);
  if (envdNoToken) await stopEnvd(envdNoToken);
});

test('the token is required, and sent by a sandbox that has it', async () => {
  const p = path.join(dir, 'tok.txt');
  await sbx.files.write(p, 'with token');
  assert.equal(await sbx.files.read(p), 'with token');
  await assert.rejects(anon.files.read(p), AuthenticationError);
  await assert.rejects(anon.files.write(p, 'x'), AuthenticationError);
  assert.equal(fs.readFileSync(p, 'utf8'), 'with token');
  const wrong = await fetch(`${envd.url}/files?path=${encodeURIComponent(p)}`, {
    headers: { 'X-Access-Token': 'not-the-token' },
  });
  assert.equal(wrong.status, 401);
  assert.match((await wrong.json()).message, /does not match/);
});

test('signed upload and download URLs from the SDK', async () => {
  const p = path.join(dir, 'signed.txt');
  const up = await sbx.uploadUrl(p);
  assert.match(up, /signature=v1_/);
  const form = new FormData();
  form.append('file', new Blob(['signed upload']), p);
  const r = await fetch(up, { method: 'POST', body: form });
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepEqual((await r.json()).map((e) => e.path), [p]);

  const down = await sbx.downloadUrl(p);
  const g = await fetch(down);
  assert.equal(g.status, 200);
  assert.equal(await g.text(), 'signed upload');

  const timed = await sbx.downloadUrl(p, { useSignatureExpiration: 120 });
  assert.match(timed, /signature_expiration=\d+/);
  assert.equal((await fetch(timed)).status, 200);
});

test('signed upload of a plain form field to a relative path, and an expired one (E2B\'s signing tests)', async () => {
  // The default user here is root: a relative path lands in root's home. Use a name unique to
  // this run and remove it afterwards.
  const rel = `hutch-signed-${process.pid}-${Date.now()}.txt`;
  const abs = path.join('/root', rel); // as envd sees it
  const onHost = path.join(envd.home, rel); // envd's /root is this directory (lib/envd.mjs)
  try {
    const up = await sbx.uploadUrl(rel, { useSignatureExpiration: 10_000 });
    const form = new FormData();
    form.append('file', 'file content'); // a field, not a file: no filename in the part
    const r = await fetch(up, { method: 'POST', body: form });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), [{ name: rel, path: abs, type: 'file' }]);
    assert.equal(fs.readFileSync(onHost, 'utf8'), 'file content');

    const expired = await sbx.uploadUrl(rel, { useSignatureExpiration: -100_000 });
    const form2 = new FormData();
    form2.append('file', 'other content');
    const r2 = await fetch(expired, { method: 'POST', body: form2 });
    assert.equal(r2.status, 401);
    assert.deepEqual(await r2.json(), { code: 401, message: 'signature is already expired' });
    assert.equal(fs.readFileSync(onHost, 'utf8'), 'file content');

    const down = await sbx.downloadUrl(rel, { useSignatureExpiration: -10_000 });
    const r3 = await fetch(down);
    assert.equal(r3.status, 401);
    assert.deepEqual(await r3.json(), { code: 401, message: 'signature is already expired' });
  } finally {
    fs.rmSync(onHost, { force: true });
  }
});

test('expired, tampered and misused signatures are refused', async () => {
  const p = path.join(dir, 'signed.txt');
  const q = encodeURIComponent(p);
  const past = Math.floor(Date.now() / 1000) - 10;
  let r = await fetch(`${envd.url}/files?path=${q}&signature=${encodeURIComponent(signature(p, 'read', '', past))}&signature_expiration=${past}`);
  assert.equal(r.status, 401);
  assert.match((await r.json()).message, /expired/);

  const good = signature(p, 'read', '');
  const tampered = good.slice(0, -2) + (good.endsWith('AA') ? 'BB' : 'AA');
  r = await fetch(`${envd.url}/files?path=${q}&signature=${encodeURIComponent(tampered)}`);
  assert.equal(r.status, 401);

  // A read signature does not allow a write, nor another path, nor another user.
  const form = new FormData();
  form.append('file', new Blob(['nope']), p);
  r = await fetch(`${envd.url}/files?path=${q}&signature=${encodeURIComponent(good)}`, { method: 'POST', body: form });
  assert.equal(r.status, 401);
  r = await fetch(`${envd.url}/files?path=${encodeURIComponent('/etc/hostname')}&signature=${encodeURIComponent(good)}`);
  assert.equal(r.status, 401);
  r = await fetch(`${envd.url}/files?path=${q}&username=root&signature=${encodeURIComponent(good)}`);
  assert.equal(r.status, 401);
  r = await fetch(`${envd.url}/files?path=${q}`);
  assert.equal(r.status, 401);
  assert.match((await r.json()).message, /missing signature/);
  assert.equal(fs.readFileSync(p, 'utf8'), 'signed upload');
  // Computed the SDK's way, with the user named, it works.
  r = await fetch(`${envd.url}/files?path=${q}&username=root&signature=${encodeURIComponent(signature(p, 'read', 'root'))}`);
  assert.equal(r.status, 200);
});

test('nobody cannot read a 0600 root file, nor list or write where nobody may not', async () => {
  const secretDir = path.join(dir, 'private');
  fs.mkdirSync(secretDir, { mode: 0o700 });
  const secret = path.join(dir, 'secret.txt');
  fs.writeFileSync(secret, 'root only', { mode: 0o600 });
  fs.chmodSync(secret, 0o600);

  assert.equal(await plain.files.read(secret), 'root only');
  await assert.rejects(plain.files.read(secret, { user: 'nobody' }), /permission|denied|403/i);
  await assert.rejects(plain.files.list(secretDir, { user: 'nobody' }), /permission/i);
  await assert.rejects(plain.files.getInfo(path.join(secretDir, 'x'), { user: 'nobody' }), /permission/i);
  await assert.rejects(plain.files.write(path.join(secretDir, 'planted.txt'), 'x', { user: 'nobody' }), /permission|denied|403/i);
  assert.equal(fs.existsSync(path.join(secretDir, 'planted.txt')), false);
  await assert.rejects(plain.files.remove(secret, { user: 'nobody' }), /permission/i);
  assert.equal(fs.existsSync(secret), true);
  await assert.rejects(plain.files.makeDir(path.join(secretDir, 'd'), { user: 'nobody' }), /permission/i);
  await assert.rejects(plain.files.watchDir(secretDir, () => {}, { user: 'nobody' }), /permission/i);
});

test('what nobody writes is owned by nobody', async () => {
  const open = path.join(dir, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  const nobody = fs.statSync('/proc/self').uid === 0 ? 65534 : null;
  const f = path.join(open, 'sub', 'mine.txt');
  await plain.files.write(f, 'by nobody', { user: 'nobody' });
  assert.equal(fs.statSync(f).uid, nobody);
  assert.equal(fs.statSync(path.join(open, 'sub')).uid, nobody);
  assert.equal(await plain.files.makeDir(path.join(open, 'made'), { user: 'nobody' }), true);
  assert.equal(fs.statSync(path.join(open, 'made')).uid, nobody);
  const info = await plain.files.getInfo(f, { user: 'nobody' });
  assert.equal(info.owner, 'nobody');
});

test('an unknown user is an authentication error', async () => {
  await assert.rejects(plain.files.getInfo(dir, { user: 'no-such-user-hutch' }), AuthenticationError);
  await assert.rejects(plain.files.read(path.join(dir, 'secret.txt'), { user: 'no-such-user-hutch' }), AuthenticationError);
});
