// The official SDK's files API (e2b@2.51.0, debug mode) against a real envd: read and write in
// every format, multi-file writes, list with depth, exists, getInfo, makeDir, rename, remove,
// metadata and gzip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileNotFoundError, FileType } from 'e2b';
import { startEnvd } from './lib/envd.mjs';
import { tempDir, removeDir, stopEnvd } from './lib/fsutil.mjs';

let envd;
let sbx;
let dir;

before(async () => {
  envd = await startEnvd();
  sbx = await envd.sandbox();
  dir = tempDir();
});

after(async () => {
  if (dir) removeDir(dir);
  if (envd) await stopEnvd(envd);
});

test('write and read text', async () => {
  const p = path.join(dir, 'hello.txt');
  const info = await sbx.files.write(p, 'Hello, hutch!\n');
  assert.equal(info.path, p);
  assert.equal(info.name, 'hello.txt');
  assert.equal(await sbx.files.read(p), 'Hello, hutch!\n');
  assert.equal(fs.readFileSync(p, 'utf8'), 'Hello, hutch!\n');
  // Files are created 0666 less umask.
  assert.equal(fs.statSync(p).mode & 0o777, 0o666 & ~process.umask());
});

test('write and read bytes, blob and stream', async () => {
  const bytes = new Uint8Array(300000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff;
  const p = path.join(dir, 'bin', 'data.bin');
  await sbx.files.write(p, bytes.buffer);
  assert.deepEqual(await sbx.files.read(p, { format: 'bytes' }), bytes);
  const blob = await sbx.files.read(p, { format: 'blob' });
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), bytes);
  const stream = await sbx.files.read(p, { format: 'stream' });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), bytes);

  const p2 = path.join(dir, 'bin', 'blob.bin');
  await sbx.files.write(p2, new Blob([bytes]));
  assert.deepEqual(new Uint8Array(fs.readFileSync(p2)), bytes);
});

test('write a stream (octet-stream upload) and an empty file', async () => {
  const p = path.join(dir, 'streamed.txt');
  const parts = ['one ', 'two ', 'three'];
  const body = new ReadableStream({
    pull(c) {
      if (parts.length) c.enqueue(new TextEncoder().encode(parts.shift()));
      else c.close();
    },
  });
  await sbx.files.write(p, body);
  assert.equal(fs.readFileSync(p, 'utf8'), 'one two three');

  const e = path.join(dir, 'empty.txt');
  await sbx.files.write(e, '');
  assert.equal(fs.statSync(e).size, 0);
  assert.equal(await sbx.files.read(e), '');
  assert.deepEqual(await sbx.files.read(e, { format: 'bytes' }), new Uint8Array(0));
});

test('overwrite keeps permission bits and leaves no temporary file', async () => {
  const p = path.join(dir, 'over.sh');
  fs.writeFileSync(p, 'old');
  fs.chmodSync(p, 0o750);
  await sbx.files.write(p, 'new content');
  assert.equal(fs.readFileSync(p, 'utf8'), 'new content');
  assert.equal(fs.statSync(p).mode & 0o777, 0o750);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.hutch-upload-')), []);
});

test('multi-file write creates parent directories', async () => {
  const files = [
    { path: path.join(dir, 'multi', 'a', '1.txt'), data: 'first' },
    { path: path.join(dir, 'multi', 'b', '2.txt'), data: new TextEncoder().encode('second').buffer },
  ];
  const infos = await sbx.files.write(files);
  assert.equal(infos.length, 2);
  assert.deepEqual(infos.map((i) => i.path), files.map((f) => f.path));
  assert.equal(fs.readFileSync(files[0].path, 'utf8'), 'first');
  assert.equal(fs.readFileSync(files[1].path, 'utf8'), 'second');
});

test('paths with spaces, quotes and non-ASCII names', async () => {
  // (A '"' in a multi-file write's name reaches envd as %22: the SDK's FormData encodes it so,
  // and envd, like E2B's, takes the part's filename literally.)
  const names = ['dir with space/f i l e.txt', 'ünïcødé/€ – naïve.txt', "quo'te/a;b=c.txt"];
  const files = names.map((n, i) => ({ path: path.join(dir, 'names', n), data: `content ${i}` }));
  await sbx.files.write(files);
  for (const [i, f] of files.entries()) {
    assert.equal(fs.readFileSync(f.path, 'utf8'), `content ${i}`);
    assert.equal(await sbx.files.read(f.path), `content ${i}`);
    assert.equal((await sbx.files.getInfo(f.path)).name, path.basename(f.path));
  }
  // A single write (path query) too.
  const single = path.join(dir, 'names', 'single "q" ✓.txt');
  await sbx.files.write(single, 'ok');
  assert.equal(fs.readFileSync(single, 'utf8'), 'ok');
});

test('gzip upload and download', async () => {
  const p = path.join(dir, 'gz', 'text.txt');
  const text = 'compress me '.repeat(10000);
  await sbx.files.write(p, text, { gzip: true });
  assert.equal(fs.readFileSync(p, 'utf8'), text);
  assert.equal(await sbx.files.read(p, { gzip: true }), text);
});

test('read of a missing file is FileNotFoundError, of a directory an error', async () => {
  await assert.rejects(sbx.files.read(path.join(dir, 'nope.txt')), FileNotFoundError);
  await assert.rejects(sbx.files.read(dir), /directory/);
});

test('list with depth', async () => {
  const root = path.join(dir, 'tree');
  fs.mkdirSync(path.join(root, 'sub', 'deeper'), { recursive: true });
  fs.writeFileSync(path.join(root, 'top.txt'), 'x');
  fs.writeFileSync(path.join(root, 'sub', 'mid.txt'), 'xy');
  fs.writeFileSync(path.join(root, 'sub', 'deeper', 'low.txt'), 'xyz');

  const one = await sbx.files.list(root);
  assert.deepEqual(one.map((e) => e.name).sort(), ['sub', 'top.txt']);
  const sub = one.find((e) => e.name === 'sub');
  assert.equal(sub.type, FileType.DIR);
  assert.equal(sub.path, path.join(root, 'sub'));
  const top = one.find((e) => e.name === 'top.txt');
  assert.equal(top.type, FileType.FILE);
  assert.equal(top.size, 1);

  const two = await sbx.files.list(root, { depth: 2 });
  assert.deepEqual(two.map((e) => e.path).sort(), [
    path.join(root, 'sub'),
    path.join(root, 'sub', 'deeper'),
    path.join(root, 'sub', 'mid.txt'),
    path.join(root, 'top.txt'),
  ]);
  const all = await sbx.files.list(root, { depth: 5 });
  assert.equal(all.length, 5);
  await assert.rejects(sbx.files.list(path.join(dir, 'missing-dir')), FileNotFoundError);
  await assert.rejects(sbx.files.list(path.join(root, 'top.txt')), /not a directory/);
});

test('exists', async () => {
  assert.equal(await sbx.files.exists(dir), true);
  assert.equal(await sbx.files.exists(path.join(dir, 'hello.txt')), true);
  assert.equal(await sbx.files.exists(path.join(dir, 'does-not-exist')), false);
});

test('getInfo: modes, permissions, owner, times, symlinks', async () => {
  const f = path.join(dir, 'info.txt');
  fs.writeFileSync(f, 'info');
  fs.chmodSync(f, 0o644);
  const d = path.join(dir, 'infodir');
  fs.mkdirSync(d);
  fs.chmodSync(d, 0o755);

  const fi = await sbx.files.getInfo(f);
  assert.equal(fi.name, 'info.txt');
  assert.equal(fi.type, FileType.FILE);
  assert.equal(fi.path, f);
  assert.equal(fi.size, 4);
  assert.equal(fi.mode, 0o644);
  assert.equal(fi.permissions, '-rw-r--r--');
  assert.equal(fi.owner, 'root');
  assert.equal(fi.group, 'root');
  assert.ok(fi.modifiedTime instanceof Date);
  assert.ok(Math.abs(fi.modifiedTime.getTime() - fs.statSync(f).mtimeMs) < 1000);
  assert.equal(fi.symlinkTarget, undefined);

  const di = await sbx.files.getInfo(d);
  assert.equal(di.type, FileType.DIR);
  assert.equal(di.mode, 0o755);
  assert.equal(di.permissions, 'drwxr-xr-x');

  const l = path.join(dir, 'info-link');
  fs.symlinkSync(f, l);
  const li = await sbx.files.getInfo(l);
  assert.equal(li.type, FileType.FILE);
  assert.equal(li.symlinkTarget, f);
  assert.equal(li.permissions, 'Lrwxrwxrwx');
  assert.equal(li.mode, 0o644);

  await assert.rejects(sbx.files.getInfo(path.join(dir, 'ghost')), FileNotFoundError);
});

test('makeDir: true, then false when it exists', async () => {
  const d = path.join(dir, 'made', 'deep', 'er');
  assert.equal(await sbx.files.makeDir(d), true);
  assert.ok(fs.statSync(d).isDirectory());
  assert.equal(await sbx.files.makeDir(d), false);
  await assert.rejects(sbx.files.makeDir(path.join(dir, 'hello.txt')), /not a directory/);
});

test('rename', async () => {
  const a = path.join(dir, 'ren-a.txt');
  const b = path.join(dir, 'renamed', 'ren-b.txt');
  fs.writeFileSync(a, 'moving');
  const info = await sbx.files.rename(a, b);
  assert.equal(info.path, b);
  assert.equal(info.name, 'ren-b.txt');
  assert.equal(fs.existsSync(a), false);
  assert.equal(fs.readFileSync(b, 'utf8'), 'moving');
  await assert.rejects(sbx.files.rename(a, b), FileNotFoundError);
});

test('remove a file and a directory tree', async () => {
  const t = path.join(dir, 'rm');
  fs.mkdirSync(path.join(t, 'x', 'y'), { recursive: true });
  fs.writeFileSync(path.join(t, 'x', 'y', 'f'), 'f');
  const keep = path.join(dir, 'keep.txt');
  fs.writeFileSync(keep, 'keep');
  fs.symlinkSync(keep, path.join(t, 'x', 'link'));
  await sbx.files.remove(path.join(t, 'x', 'y', 'f'));
  assert.equal(fs.existsSync(path.join(t, 'x', 'y', 'f')), false);
  await sbx.files.remove(t);
  assert.equal(fs.existsSync(t), false);
  assert.equal(fs.readFileSync(keep, 'utf8'), 'keep');
  // Removing what is not there is not an error (RemoveAll).
  await sbx.files.remove(t);
});

test('metadata round trip and replacement', async () => {
  const p = path.join(dir, 'meta.txt');
  const w = await sbx.files.write(p, 'm', { metadata: { owner: 'alice', Project: 'hutch' } });
  assert.deepEqual(w.metadata, { owner: 'alice', project: 'hutch' });
  const info = await sbx.files.getInfo(p);
  assert.deepEqual(info.metadata, { owner: 'alice', project: 'hutch' });
  const listed = (await sbx.files.list(dir)).find((e) => e.name === 'meta.txt');
  assert.deepEqual(listed.metadata, { owner: 'alice', project: 'hutch' });
  // A new upload replaces the whole set.
  await sbx.files.write(p, 'm2', { metadata: { stage: 'two' } });
  assert.deepEqual((await sbx.files.getInfo(p)).metadata, { stage: 'two' });
  await sbx.files.write(p, 'm3');
  assert.equal((await sbx.files.getInfo(p)).metadata, undefined);
});

test('envd stays healthy', async () => {
  assert.equal(await sbx.isRunning(), true);
});
