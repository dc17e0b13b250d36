// watchDir through the official SDK: create/write/remove/rename events with names relative to
// the watched directory, recursive watches (including directories created after the start),
// includeEntry, and errors for missing paths. Every wait is bounded; none sleeps.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileNotFoundError, FilesystemEventType, FileType } from 'e2b';
import { startEnvd } from './lib/envd.mjs';
import { tempDir, removeDir, EventLog, stopEnvd } from './lib/fsutil.mjs';

let envd;
let sbx;
let dir;

before(async () => {
  envd = await startEnvd();
  sbx = await envd.sandbox();
  dir = tempDir('hutch-watch-');
});

after(async () => {
  if (dir) removeDir(dir);
  if (envd) await stopEnvd(envd);
});

test('create, write, rename and remove events', async () => {
  const w = path.join(dir, 'flat');
  fs.mkdirSync(w);
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e));
  try {
    fs.writeFileSync(path.join(w, 'a.txt'), 'hello');
    await log.waitFor((e) => e.name === 'a.txt' && e.type === FilesystemEventType.CREATE, 'create');
    await log.waitFor((e) => e.name === 'a.txt' && e.type === FilesystemEventType.WRITE, 'write');
    fs.renameSync(path.join(w, 'a.txt'), path.join(w, 'b.txt'));
    await log.waitFor((e) => e.name === 'a.txt' && e.type === FilesystemEventType.RENAME, 'rename');
    await log.waitFor((e) => e.name === 'b.txt' && e.type === FilesystemEventType.CREATE, 'create after rename');
    fs.chmodSync(path.join(w, 'b.txt'), 0o600);
    await log.waitFor((e) => e.name === 'b.txt' && e.type === FilesystemEventType.CHMOD, 'chmod');
    fs.unlinkSync(path.join(w, 'b.txt'));
    await log.waitFor((e) => e.name === 'b.txt' && e.type === FilesystemEventType.REMOVE, 'remove');
    // Without includeEntry no entry is attached.
    assert.ok(log.events.every((e) => e.entry === undefined));
  } finally {
    await handle.stop();
  }
});

test('writes through the SDK are seen by a watch as create and write', async () => {
  // What E2B's own SDK tests wait for: a WRITE under the file's name after files.write().
  const w = path.join(dir, 'sdkwrites');
  fs.mkdirSync(path.join(w, 'nested'), { recursive: true });
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e), { recursive: true });
  try {
    await sbx.files.write(path.join(w, 'up.txt'), 'uploaded');
    await log.waitFor((e) => e.name === 'up.txt' && e.type === FilesystemEventType.CREATE, 'create of upload');
    await log.waitFor((e) => e.name === 'up.txt' && e.type === FilesystemEventType.WRITE, 'write of upload');
    const before = log.events.length;
    await sbx.files.write(path.join(w, 'up.txt'), 'overwritten');
    await log.waitFor(
      (e) => log.events.indexOf(e) >= before && e.name === 'up.txt' && e.type === FilesystemEventType.WRITE,
      'write of overwrite',
    );
    await sbx.files.write(path.join(w, 'nested', 'deep.txt'), 'deep');
    await log.waitFor((e) => e.name === 'nested/deep.txt' && e.type === FilesystemEventType.WRITE, 'nested write');
    await sbx.files.remove(path.join(w, 'up.txt'));
    await log.waitFor((e) => e.name === 'up.txt' && e.type === FilesystemEventType.REMOVE, 'remove');
    // Uploads' temporary files are never reported.
    assert.deepEqual(log.events.filter((e) => e.name !== 'up.txt' && e.name !== 'nested/deep.txt'), []);
  } finally {
    await handle.stop();
  }
});

test('recursive watch reports nested paths, also in directories made after the start', async () => {
  const w = path.join(dir, 'rec');
  fs.mkdirSync(path.join(w, 'existing'), { recursive: true });
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e), { recursive: true });
  try {
    fs.writeFileSync(path.join(w, 'existing', 'x.txt'), 'x');
    await log.waitFor((e) => e.name === 'existing/x.txt' && e.type === FilesystemEventType.CREATE, 'nested create');
    fs.mkdirSync(path.join(w, 'fresh'));
    await log.waitFor((e) => e.name === 'fresh' && e.type === FilesystemEventType.CREATE, 'new dir');
    fs.writeFileSync(path.join(w, 'fresh', 'y.txt'), 'y');
    await log.waitFor((e) => e.name === 'fresh/y.txt' && e.type === FilesystemEventType.CREATE, 'create in new dir');
    fs.rmSync(path.join(w, 'fresh'), { recursive: true });
    await log.waitFor((e) => e.name === 'fresh/y.txt' && e.type === FilesystemEventType.REMOVE, 'nested remove');
    await log.waitFor((e) => e.name === 'fresh' && e.type === FilesystemEventType.REMOVE, 'dir remove');
  } finally {
    await handle.stop();
  }
});

test('recursive watch follows a directory moved within the tree, and forgets one moved out', async () => {
  const w = path.join(dir, 'moves');
  const outside = path.join(dir, 'moves-outside');
  fs.mkdirSync(path.join(w, 'a', 'inner'), { recursive: true });
  fs.mkdirSync(outside);
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e), { recursive: true });
  try {
    fs.renameSync(path.join(w, 'a'), path.join(w, 'b'));
    await log.waitFor((e) => e.name === 'b' && e.type === FilesystemEventType.CREATE, 'move within');
    fs.writeFileSync(path.join(w, 'b', 'inner', 'f.txt'), 'f');
    await log.waitFor((e) => e.name === 'b/inner/f.txt' && e.type === FilesystemEventType.CREATE, 'create under new name');
    fs.renameSync(path.join(w, 'b'), path.join(outside, 'b'));
    await log.waitFor((e) => e.name === 'b' && e.type === FilesystemEventType.RENAME, 'move out');
    fs.writeFileSync(path.join(outside, 'b', 'inner', 'gone.txt'), 'g');
    fs.writeFileSync(path.join(w, 'marker'), 'm');
    await log.waitFor((e) => e.name === 'marker' && e.type === FilesystemEventType.CREATE, 'marker');
    assert.ok(!log.events.some((e) => e.name.includes('gone') || e.name.startsWith('a/')), JSON.stringify(log.events));
  } finally {
    await handle.stop();
  }
});

test('a non-recursive watch does not report nested paths', async () => {
  const w = path.join(dir, 'nonrec');
  fs.mkdirSync(path.join(w, 'sub'), { recursive: true });
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e));
  try {
    fs.writeFileSync(path.join(w, 'sub', 'hidden.txt'), 'h');
    // A later event in the watched directory itself proves the nested one was not just slow.
    fs.writeFileSync(path.join(w, 'marker'), 'm');
    await log.waitFor((e) => e.name === 'marker' && e.type === FilesystemEventType.CREATE, 'marker');
    assert.ok(!log.events.some((e) => e.name.includes('hidden')), JSON.stringify(log.events));
  } finally {
    await handle.stop();
  }
});

test('includeEntry attaches EntryInfo to create and write events', async () => {
  const w = path.join(dir, 'entries');
  fs.mkdirSync(w);
  const log = new EventLog();
  const handle = await sbx.files.watchDir(w, (e) => log.push(e), { includeEntry: true });
  try {
    fs.writeFileSync(path.join(w, 'e.txt'), 'entry');
    const ev = await log.waitFor(
      (e) => e.name === 'e.txt' && e.type === FilesystemEventType.WRITE && e.entry?.size === 5,
      'write with entry',
    );
    assert.equal(ev.entry.name, 'e.txt');
    assert.equal(ev.entry.path, path.join(w, 'e.txt'));
    assert.equal(ev.entry.type, FileType.FILE);
    fs.unlinkSync(path.join(w, 'e.txt'));
    const rm = await log.waitFor((e) => e.name === 'e.txt' && e.type === FilesystemEventType.REMOVE, 'remove');
    assert.equal(rm.entry, undefined);
  } finally {
    await handle.stop();
  }
});

test('watching a missing directory or a file fails', async () => {
  await assert.rejects(sbx.files.watchDir(path.join(dir, 'missing'), () => {}), FileNotFoundError);
  const f = path.join(dir, 'plain.txt');
  fs.writeFileSync(f, 'p');
  await assert.rejects(sbx.files.watchDir(f, () => {}), /not a directory/);
});
