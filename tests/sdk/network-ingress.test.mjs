// The official SDKs, unmodified, against a real `hutch serve`: network.allowPublicTraffic false
// (a traffic access token that the gateway requires on every port but envd's, by header
// routing and Host routing, upgrades included, and never passes on) and network.maskRequestHost
// (the Host the sandbox's servers see).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Sandbox } from 'e2b';
import { Sandbox as CodeInterpreter } from '@e2b/code-interpreter';
import { startHutch } from './lib/hutch.mjs';

const DOMAIN = 'sbx.test';
const TOKEN_HEADER = 'e2b-traffic-access-token';
let hutch;

before(async () => {
  hutch = await startHutch(['--domain', DOMAIN]);
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
});

// A server on :8000 in the sandbox that answers every GET with the request's headers.
const ECHO = `
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', 8000), H).serve_forever()
`;

// A request through the gateway with node:http (which lets the test set Host and Upgrade).
function get(path, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: hutch.port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body: body ? JSON.parse(body) : null }));
    });
    req.on('error', reject);
    req.end();
  });
}

const byHeader = (sbx, port, extra = {}) => get('/', { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port), ...extra });
const byHost = (sbx, port, extra = {}) => get('/', { Host: `${port}-${sbx.sandboxId}.${DOMAIN}`, ...extra });

async function startEcho(sbx, headers = {}) {
  await sbx.files.write('/tmp/echo.py', ECHO);
  await sbx.commands.run('python3 /tmp/echo.py', { background: true });
  for (let i = 0; i < 100; i++) {
    const r = await byHeader(sbx, 8000, headers);
    if (r.status !== 502) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the echo server did not start');
}

function assert403(r, sbx, missing) {
  assert.equal(r.status, 403);
  assert.deepEqual(r.body, {
    sandboxId: sbx.sandboxId,
    message: missing
      ? "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing"
      : "Sandbox is secured with traffic access token. Provided token in header 'e2b-traffic-access-token' is invalid",
    code: 403,
  });
}

test('allowPublicTraffic false: the token is required on user ports, not on envd, and not passed on', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, network: { allowPublicTraffic: false } });
  try {
    const token = sbx.trafficAccessToken;
    assert.match(token, /^[0-9a-f]{64}$/);
    // envd (commands, files) needs none: it has its own X-Access-Token.
    await startEcho(sbx, { [TOKEN_HEADER]: token });
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');

    for (const route of [byHeader, byHost]) {
      assert403(await route(sbx, 8000), sbx, true);
      assert403(await route(sbx, 8000, { [TOKEN_HEADER]: 'x'.repeat(64) }), sbx, false);
      assert403(await route(sbx, 8000, { [TOKEN_HEADER]: token.slice(1) }), sbx, false);
      // Before the sandbox is reached: a closed port answers 403 too.
      assert403(await route(sbx, 8001), sbx, true);
      const ok = await route(sbx, 8000, { 'E2B-Traffic-Access-Token': token });
      assert.equal(ok.status, 200);
      assert.equal(ok.body[TOKEN_HEADER], undefined, 'the token must not reach the sandbox');
      assert.equal(ok.body['e2b-sandbox-id'], undefined);
      // An upgrade is checked the same way (the echo server answers it with a plain 200).
      const upgrade = { Connection: 'Upgrade', Upgrade: 'websocket' };
      assert403(await route(sbx, 8000, upgrade), sbx, true);
      const up = await route(sbx, 8000, { ...upgrade, [TOKEN_HEADER]: token });
      assert.equal(up.status, 200);
      assert.equal(up.body[TOKEN_HEADER], undefined);
    }
    // The token comes back on connect and in getInfo's network.
    const again = await Sandbox.connect(sbx.sandboxId, hutch.opts);
    assert.equal(again.trafficAccessToken, token);
    const info = await Sandbox.getInfo(sbx.sandboxId, hutch.opts);
    assert.equal(info.network.allowPublicTraffic, false);

    // Kept across a pause and resume.
    assert.equal(await sbx.pause(), true);
    assert403(await byHeader(sbx, 8000), sbx, true); // refused without resuming it
    const resumed = await Sandbox.connect(sbx.sandboxId, hutch.opts);
    assert.equal(resumed.trafficAccessToken, token);
    assert.equal((await resumed.commands.run('echo back')).stdout, 'back\n');
    assert403(await byHeader(sbx, 8000), sbx, true);
    assert.equal((await byHeader(sbx, 8000, { [TOKEN_HEADER]: token })).status, 200); // paused in memory
  } finally {
    await Sandbox.kill(sbx.sandboxId, hutch.opts);
  }
});

test('a default sandbox is public: no token, trafficAccessToken null', async () => {
  const sbx = await Sandbox.create('base', hutch.opts);
  try {
    assert.equal(sbx.trafficAccessToken, undefined); // the SDK's reading of null
    const res = await fetch(`${hutch.url}/sandboxes/${sbx.sandboxId}/connect`, {
      method: 'POST',
      headers: { 'X-API-Key': hutch.apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify({ timeout: 60 }),
    });
    assert.equal((await res.json()).trafficAccessToken, null);
    await startEcho(sbx);
    const r = await byHeader(sbx, 8000, { [TOKEN_HEADER]: 'anything' });
    assert.equal(r.status, 200);
    assert.equal(r.body[TOKEN_HEADER], undefined);
    assert.equal(r.body.host, `127.0.0.1:${hutch.port}`);
    const info = await Sandbox.getInfo(sbx.sandboxId, hutch.opts);
    assert.equal(info.network.allowPublicTraffic, true);
    assert.equal(info.network.maskRequestHost, undefined);
  } finally {
    await sbx.kill();
  }
});

test('maskRequestHost: the sandbox sees it as Host, ${PORT} replaced; the client Host as X-Forwarded-Host', async () => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, network: { maskRequestHost: 'example.test:${PORT}' } });
  try {
    await startEcho(sbx);
    const r = await byHeader(sbx, 8000);
    assert.equal(r.status, 200);
    assert.equal(r.body.host, 'example.test:8000');
    assert.equal(r.body['x-forwarded-host'], `127.0.0.1:${hutch.port}`);
    const h = await byHost(sbx, 8000, { Connection: 'Upgrade', Upgrade: 'websocket' });
    assert.equal(h.status, 200);
    assert.equal(h.body.host, 'example.test:8000');
    assert.equal(h.body['x-forwarded-host'], `8000-${sbx.sandboxId}.${DOMAIN}`);
    const info = await Sandbox.getInfo(sbx.sandboxId, hutch.opts);
    assert.equal(info.network.maskRequestHost, 'example.test:${PORT}');
    // envd's traffic keeps its Host: the SDK's commands still work.
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
  } finally {
    await sbx.kill();
  }
});

test('code interpreter with allowPublicTraffic false: the SDK sends the token, runCode works', async () => {
  const sbx = await CodeInterpreter.create({ ...hutch.opts, network: { allowPublicTraffic: false } });
  try {
    assert.match(sbx.trafficAccessToken, /^[0-9a-f]{64}$/);
    const r = await sbx.runCode('1+1');
    assert.equal(r.text, '2');
    assert403(await byHeader(sbx, 49999), sbx, true);
  } finally {
    await sbx.kill();
  }
});
