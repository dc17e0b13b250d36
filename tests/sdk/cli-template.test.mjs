// The official E2B CLI (@e2b/cli, unmodified) against a real `hutch serve` (e2b-compat 5.4):
// `e2b template create` from an e2b.Dockerfile, `template list`, `template delete`, run as a
// child process with only E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL (no login, no access
// token: the CLI reads neither for these commands).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { startHutch } from './lib/hutch.mjs';
import { tempDir, removeDir } from './lib/fsutil.mjs';

const require = createRequire(import.meta.url);
const cliPath = path.join(path.dirname(require.resolve('@e2b/cli/package.json')), 'dist', 'index.js');

let hutch;
let ctx;
let home;

before(async () => {
  hutch = await startHutch();
  ctx = tempDir('hutch-cli-ctx-');
  home = tempDir('hutch-cli-home-');
  fs.mkdirSync(path.join(ctx, 'files', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(ctx, 'files', 'data.txt'), 'data from the context\n');
  fs.writeFileSync(path.join(ctx, 'files', 'sub', 'more.txt'), 'more\n');
  fs.writeFileSync(
    path.join(ctx, 'e2b.Dockerfile'),
    [
      'FROM e2bdev/base',
      'RUN mkdir -p /opt/tool && echo tool-1 > /opt/tool/version',
      'COPY files/ /opt/tool/files/',
      'ENV TOOL_MODE=cli',
      'WORKDIR /opt/tool',
      'RUN ls files > listing.txt',
      '',
    ].join('\n')
  );
});

after(async () => {
  removeDir(ctx);
  removeDir(home);
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

// Runs the CLI to its end; no terminal, no user config (an empty HOME), no update check.
function e2b(...args) {
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    E2B_API_KEY: hutch.apiKey,
    E2B_API_URL: hutch.url,
    E2B_SANDBOX_URL: hutch.url,
    NO_UPDATE_NOTIFIER: '1',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: ctx, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, all: `$ e2b ${args.join(' ')}\n${stdout}\n${stderr}` });
    });
  });
}

test('@e2b/cli is pinned to 2.19.0', () => {
  assert.equal(require('@e2b/cli/package.json').version, '2.19.0');
});

test('e2b template create from an e2b.Dockerfile, template list, a sandbox from it, template delete', async () => {
  const created = await e2b('template', 'create', 'cli-tpl', '--dockerfile', 'e2b.Dockerfile', '-c', 'echo started > /tmp/started; exec sleep 86400', '--ready-cmd', 'test -f /tmp/started');
  assert.equal(created.code, 0, created.all);
  assert.match(created.stdout, /Building sandbox template cli-tpl finished/, created.all);

  const listed = await e2b('template', 'list', '--format', 'json');
  assert.equal(listed.code, 0, listed.all);
  const templates = JSON.parse(listed.stdout);
  const mine = templates.find((t) => t.aliases.includes('cli-tpl'));
  assert.ok(mine, listed.all);
  assert.equal(mine.buildStatus, 'ready');
  const pretty = await e2b('template', 'list');
  assert.equal(pretty.code, 0, pretty.all);
  assert.match(pretty.stdout, new RegExp(`${mine.templateID}\\s+cli-tpl\\s`), pretty.all);

  const sbx = await Sandbox.create('cli-tpl', hutch.opts);
  try {
    const r = await sbx.commands.run(
      'cat version files/data.txt files/sub/more.txt listing.txt /tmp/started; echo $TOOL_MODE; pwd; id -un; stat -c %U files/data.txt'
    );
    // The Dockerfile's WORKDIR stays, the user becomes E2B's default `user` (no USER line), and
    // COPY gives root's files as Docker does.
    assert.equal(r.stdout, 'tool-1\ndata from the context\nmore\ndata.txt\nsub\nstarted\ncli\n/opt/tool\nuser\nroot\n');
    assert.equal((await sbx.commands.run('pgrep -fx "sleep 86400" | wc -l')).stdout, '1\n');
  } finally {
    await sbx.kill();
  }

  // A rebuild of the same Dockerfile comes from the cache: WORKDIR /, RUN, COPY, WORKDIR, RUN.
  // (`--no-cache` is not tried: @e2b/cli 2.19.0 passes `skipCache: opts.noCache`, but commander
  // names a `--no-cache` flag `cache`, so the flag never reaches the build request.)
  const again = await e2b('template', 'create', 'cli-tpl', '--dockerfile', 'e2b.Dockerfile', '-c', 'echo started > /tmp/started; exec sleep 86400', '--ready-cmd', 'test -f /tmp/started');
  assert.equal(again.code, 0, again.all);
  assert.equal(again.stdout.split('\n').filter((l) => /INFO\s+cached\s*$/.test(l)).length, 5, again.all);
  const first = created.stdout.split('\n').filter((l) => /INFO\s+cached\s*$/.test(l)).length;
  assert.equal(first, 0, created.all);

  const deleted = await e2b('template', 'delete', mine.templateID, '--yes');
  assert.equal(deleted.code, 0, deleted.all);
  const after = JSON.parse((await e2b('template', 'list', '--format', 'json')).stdout);
  assert.ok(!after.some((t) => t.templateID === mine.templateID), JSON.stringify(after));
  await assert.rejects(Sandbox.create('cli-tpl', hutch.opts));
});

test('e2b template create with a failing RUN exits 1 and says why', async () => {
  fs.writeFileSync(path.join(ctx, 'bad.Dockerfile'), 'FROM e2bdev/base\nRUN echo going down; exit 3\n');
  const r = await e2b('template', 'create', 'cli-bad', '--dockerfile', 'bad.Dockerfile');
  assert.equal(r.code, 1, r.all);
  assert.match(r.stderr, /Template build failed/, r.all);
  assert.match(r.stderr, /code 3/, r.all);
});
