// The pinned official SDKs load and expose what the other suites drive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

test('e2b is pinned to 2.51.0 and exports Sandbox', async () => {
  assert.equal(require('e2b/package.json').version, '2.51.0');
  const e2b = await import('e2b');
  assert.equal(typeof e2b.Sandbox, 'function');
  assert.equal(typeof e2b.Sandbox.create, 'function');
});

test('@e2b/code-interpreter is pinned to 2.8.0 and exports Sandbox', async () => {
  assert.equal(require('@e2b/code-interpreter/package.json').version, '2.8.0');
  const ci = await import('@e2b/code-interpreter');
  assert.equal(typeof ci.Sandbox.create, 'function');
  assert.equal(typeof ci.Sandbox.prototype.runCode, 'function');
});
