// Domain names in network.allowOut (E2B's egress filtering by HTTP Host and TLS SNI) through the
// official SDK, against a "world" network namespace this test creates (192.0.3.0/24, apart from
// the priv and attack tests' worlds): 192.0.3.10 serves the allowed names, 192.0.3.66 stands for
// every other address and records each connection it gets. hutch serve resolves the names with
// --egress-resolve, so no DNS is involved and no traffic leaves the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { startHutch } from './lib/hutch.mjs';

const NS = `hutch-egress-${process.pid}`;
const LINK = `he${process.pid % 100000}`;
const GOOD = '192.0.3.10';
const EVIL = '192.0.3.66';
let hutch, world, dir;
const created = [];
const create = async (opts) => {
  const sbx = await Sandbox.create('base', { ...hutch.opts, ...opts });
  created.push(sbx.sandboxId);
  return sbx;
};

const sh = (cmd) => execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const hits = () => fs.readFileSync(path.join(dir, 'hits'), 'utf8');
const ruleset = () => execFileSync('nft', ['list', 'table', 'inet', 'hutch']).toString();

// HTTP on :80 and :8080, TLS (self-signed, any SNI) on :443 and :8443 of both addresses; each
// answer names the address that served it and the Host it got; every request is written to `hits`.
const SERVER = `
import hashlib, http.server, socketserver, ssl, sys, threading
d = sys.argv[1]
BIG = bytes(range(256)) * (32 << 10)
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, body):
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data = self.rfile.read(int(self.headers['Content-Length']))
        self.reply(hashlib.sha256(data).hexdigest().encode())
    def do_GET(self):
        if self.path == '/big':
            return self.reply(BIG)
        me = self.connection.getsockname()[0]
        with open(d + '/hits', 'a') as f:
            f.write('%s %s %s\\n' % (me, self.server.tag, self.headers.get('Host')))
        body = ('%s-%s from %s host=%s\\n' % ('allowed' if me == '${GOOD}' else 'evil', self.server.tag, me,
                self.headers.get('Host'))).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + '/cert.pem', d + '/key.pem')
for ip in ('${GOOD}', '${EVIL}'):
    for port, tag in ((80, 'http'), (443, 'tls'), (8080, 'http8080'), (8443, 'tls8443')):
        s = S((ip, port), H)
        s.tag = tag
        if tag.startswith('tls'):
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
        threading.Thread(target=s.serve_forever, daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
`;

function worldDown() {
  sh(`ip netns pids ${NS} 2>/dev/null | xargs -r kill -9; ip link del ${LINK} 2>/dev/null; ip netns del ${NS} 2>/dev/null; true`);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-egress-'));
  worldDown();
  sh(
    `ip netns add ${NS} && ip link add ${LINK} type veth peer name wv0 netns ${NS} && ` +
      `ip addr add 192.0.3.1/24 dev ${LINK} && ip link set ${LINK} up && ` +
      `ip -n ${NS} addr add ${GOOD}/24 dev wv0 && ip -n ${NS} addr add ${EVIL}/24 dev wv0 && ` +
      `ip -n ${NS} link set wv0 up && ip -n ${NS} link set lo up`,
  );
  sh(`openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=allowed.test -days 1 -keyout ${dir}/key.pem -out ${dir}/cert.pem 2>/dev/null`);
  fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
  fs.writeFileSync(path.join(dir, 'hits'), '');
  world = spawn('ip', ['netns', 'exec', NS, '/usr/bin/python3', path.join(dir, 'server.py'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    world.stdout.once('data', resolve);
    world.once('exit', () => reject(new Error('the world server exited')));
  });
  hutch = await startHutch([
    '--egress-resolve', `allowed.test:${GOOD}`,
    '--egress-resolve', `api.wild.test:${GOOD}`,
    '--egress-resolve', `wild.test:${GOOD}`,
    '--egress-resolve', `evil.test:${EVIL}`,
    // Names an operator (or a DNS answer) points inside: never connected to.
    '--egress-resolve', 'loopback.test:127.0.0.1',
    '--egress-resolve', 'metadata.test:169.254.169.254',
    '--egress-resolve', 'private.test:10.1.2.3',
    '--egress-resolve', 'host.test:192.0.3.1',
  ]);
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  world.kill('SIGKILL');
  worldDown();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
  const rules = ruleset();
  for (const id of created) assert.ok(!rules.includes(`_${id}`), `nftables objects of ${id} left behind`);
});

const metrics = async () =>
  Object.fromEntries(
    (await (await fetch(`${hutch.url}/metrics`)).text())
      .split('\n')
      .filter((l) => l.startsWith('hutch_egress_'))
      .map((l) => [l.split(' ')[0], Number(l.split(' ')[1])]),
  );

// curl inside the sandbox; the name's address inside is whatever --resolve says (the sandbox's
// own choice, which the proxy must not trust).
const curl = async (sbx, args) =>
  (await sbx.commands.run(`curl -sS --max-time 5 ${args} 2>&1; echo " rc=$?"`).catch((e) => e.result)).stdout.trim();

test('allowOut domains with everything else denied: HTTP by Host, TLS by SNI, wildcards, and nothing else', async () => {
  const sbx = await create({ network: { allowOut: ['allowed.test', '*.wild.test'], denyOut: ['0.0.0.0/0'] } });
  try {
    const before = hits();
    // The sandbox points the name at the wrong address: the proxy connects to its own resolution.
    assert.match(await curl(sbx, `http://allowed.test/ --resolve allowed.test:80:${EVIL}`), /^allowed-http from 192\.0\.3\.10 host=allowed\.test\s+rc=0$/);
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${EVIL}`), /^allowed-tls from 192\.0\.3\.10 host=allowed\.test\s+rc=0$/);
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${GOOD}`), /^allowed-tls /);
    // Bytes pass intact both ways (8 MiB each).
    const pattern = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const big = crypto.createHash('sha256').update(Buffer.concat(Array(32 << 10).fill(pattern))).digest('hex');
    assert.equal(await curl(sbx, `-k https://allowed.test/big --resolve allowed.test:443:${EVIL} | sha256sum | cut -c1-64`), `${big}\n rc=0`);
    const up = await sbx.commands.run(
      `head -c 8M /dev/urandom > /tmp/up && sha256sum /tmp/up | cut -c1-64 && ` +
        `curl -sS -k --max-time 20 --data-binary @/tmp/up --resolve allowed.test:443:${EVIL} https://allowed.test/up`,
    );
    const [sent, got] = up.stdout.split('\n');
    assert.equal(got, sent, 'upload hash');
    // Python's own TLS and HTTP stacks, names from the sandbox's /etc/hosts.
    await sbx.commands.run(`echo '${GOOD} allowed.test api.wild.test wild.test evil.test' | sudo tee -a /etc/hosts >/dev/null`);
    const py = await sbx.commands.run(
      `python3 -c "import ssl, urllib.request as u; c = ssl._create_unverified_context(); ` +
        `print(u.urlopen('https://api.wild.test/', context=c, timeout=5).read().decode().strip()); ` +
        `print(u.urlopen('http://allowed.test/', timeout=5).read().decode().strip())"`,
    );
    assert.equal(py.stdout, 'allowed-tls from 192.0.3.10 host=api.wild.test\nallowed-http from 192.0.3.10 host=allowed.test\n');
    // A wildcard covers names below the domain, not the domain itself.
    assert.match(await curl(sbx, '-k https://wild.test/'), /rc=(35|56|52)/);
    assert.match(await curl(sbx, 'http://wild.test/ -o /dev/null -w %{http_code}'), /^403 rc=0$/);
    // Names not in the list: TLS is closed, HTTP gets a 403; also when sent to an allowed address.
    assert.match(await curl(sbx, '-k https://evil.test/'), /rc=(35|56|52)/);
    assert.match(await curl(sbx, `http://${GOOD}/ -H 'Host: evil.test' -o /dev/null -w %{http_code}`), /^403 rc=0$/);
    assert.match(await curl(sbx, `http://${EVIL}/ -o /dev/null -w %{http_code}`), /^403 rc=0$/);
    // Other ports are CIDR rules only: denied.
    assert.match(await curl(sbx, `http://allowed.test:8080/`), /rc=(7|28)/);
    assert.equal(hits().slice(before.length).split('\n').filter((l) => l.startsWith(EVIL)).length, 0, hits());
    const rules = ruleset();
    assert.match(rules, /redirect to :\d+/, 'the sandbox has a redirect to the proxy');
  } finally {
    await sbx.kill();
  }
  assert.ok(!/px_[a-z0-9]+ \{[^}]*redirect/.test(ruleset()), 'the redirect went with the sandbox');
  const m = await metrics();
  assert.ok(m.hutch_egress_proxied_total >= 7 && m.hutch_egress_refused_total >= 5, JSON.stringify(m));
  assert.equal(m.hutch_egress_connections, 0);
});

test('attack: a spoofed SNI or Host reaches only the allowed name\'s own address, never the one dialled', async () => {
  const sbx = await create({ network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } });
  try {
    const before = hits();
    // Dial the attacker's address with an allowed SNI / Host, from Python sockets as root.
    const attack = await sbx.commands.run(
      `sudo python3 -c "
import socket, ssl
c = ssl._create_unverified_context()
out = []
def rd(s):
    b = b''
    try:
        while True:
            x = s.recv(4096)
            if not x:
                break
            b += x
    except (ssl.SSLError, OSError):
        pass
    return b.decode()
s = c.wrap_socket(socket.create_connection(('${EVIL}', 443), timeout=5), server_hostname='allowed.test')
s.sendall(b'GET / HTTP/1.1\\r\\nHost: evil.test\\r\\nConnection: close\\r\\n\\r\\n')
out.append(rd(s).split('\\r\\n\\r\\n')[-1].strip())
s = socket.create_connection(('${EVIL}', 80), timeout=5)
s.sendall(b'GET / HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n')
out.append(rd(s).split('\\r\\n\\r\\n')[-1].strip())
for host in (b'Host: allowed.test\\r\\nHost: evil.test', b'Host: evil.test\\r\\nX: allowed.test', b'X: y'):
    s = socket.create_connection(('${EVIL}', 80), timeout=5)
    s.sendall(b'GET / HTTP/1.1\\r\\n' + host + b'\\r\\n\\r\\n')
    out.append(s.recv(4096).decode().split(' ')[1])
s = socket.create_connection(('${EVIL}', 80), timeout=5)
s.sendall(b'GET http://evil.test/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n')
out.append(s.recv(4096).decode().split(' ')[1])
s = socket.create_connection(('${EVIL}', 443), timeout=5)
s.sendall(b'\\x16\\x03\\x01\\x00\\x05hello')
s.settimeout(5)
out.append(repr(s.recv(10)))
print(out)
"`,
    ).catch((e) => e.result);
    // The TLS answer comes from 192.0.3.10 (where the proxy sent it), whatever Host came inside.
    assert.equal(
      attack.stdout.trim(),
      "['allowed-tls from 192.0.3.10 host=evil.test', 'allowed-http from 192.0.3.10 host=allowed.test', '403', '403', '403', '403', \"b''\"]",
      attack.stderr,
    );
    assert.equal(hits().slice(before.length).split('\n').filter((l) => l.startsWith(EVIL)).length, 0, hits());
    // Slow or oversized heads are cut off; the proxy stays usable.
    const bounded = await sbx.commands.run(
      `python3 -c "
import socket, time
s = socket.create_connection(('${EVIL}', 80), timeout=15)
s.sendall(b'GET / HTTP/1.1\\r\\nX: ' + b'a' * 20000 + b'\\r\\n\\r\\n')
print(s.recv(100).split(b' ')[1].decode())
s = socket.create_connection(('${EVIL}', 80), timeout=15)
t = time.time(); s.sendall(b'GET / HTTP/1.1\\r\\n')
print(s.recv(100), round(time.time() - t) >= 9)
s = socket.create_connection(('${EVIL}', 80), timeout=15)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b'GET / HTTP/1.1\\r\\nHost: allowed.test\\r\\nX: ')
try:
    for _ in range(100):
        s.send(b'a')
        time.sleep(0.005)
except OSError:
    pass
print(s.recv(100).split(b' ')[1].decode())
"`,
    );
    assert.equal(bounded.stdout, "403\nb'' True\n403\n");
    assert.match(await curl(sbx, `http://allowed.test/ --resolve allowed.test:80:${EVIL}`), /^allowed-http /);
  } finally {
    await sbx.kill();
  }
});

test('attack: allowed names that resolve to private, metadata, loopback or host addresses reach nothing', async () => {
  const names = ['loopback.test', 'metadata.test', 'private.test', 'host.test'];
  const sbx = await create({ network: { allowOut: names, denyOut: ['0.0.0.0/0'] } });
  try {
    for (const name of names)
      assert.match(await curl(sbx, `http://${name}/ --resolve ${name}:80:${EVIL} -o /dev/null -w %{http_code}`), /^502 rc=0$/, name);
    assert.match(await curl(sbx, `-k https://host.test/ --resolve host.test:443:${EVIL}`), /rc=(35|56|52)/);
    assert.ok((await metrics()).hutch_egress_unreachable_total >= 5);
  } finally {
    await sbx.kill();
  }
});

test('without domains nothing is redirected; updateNetwork adds and removes domain rules', async () => {
  const sbx = await create({ allowInternetAccess: false, network: { allowOut: [GOOD] } });
  try {
    // An allowed address goes direct (no proxy); a name to it is fine too.
    assert.match(await curl(sbx, `http://allowed.test/ --resolve allowed.test:80:${GOOD}`), /^allowed-http /);
    assert.match(await curl(sbx, `http://${EVIL}/`), /rc=(7|28)/);
    assert.ok(!/redirect/.test(ruleset()));
    await sbx.updateNetwork({ allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] });
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${EVIL}`), /^allowed-tls from 192\.0\.3\.10/);
    await sbx.updateNetwork({ denyOut: ['0.0.0.0/0'] });
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${EVIL}`), /rc=(7|28)/);
    await assert.rejects(sbx.updateNetwork({ denyOut: ['evil.test'] }), /allowOut only/);
    await assert.rejects(sbx.updateNetwork({ allowOut: ['bad_name!'] }), /invalid|domain/i);
  } finally {
    await sbx.kill();
  }
});

test('a killed sandbox leaves no proxied connection open on the host', async () => {
  // Established TCP in the host's namespace (hutch's): to the world's :443, and to the proxy.
  const established = (pred) =>
    fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length > 3 && f[3] === '01' && pred(f[1], f[2])).length;
  const sbx = await create({ network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } });
  const port = Number(/redirect to :(\d+)/.exec(ruleset())[1]);
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const upstream = () => established((local, remote) => remote === '0A0300C0:01BB');
  const clients = () => established((local) => local.endsWith(`:${hex}`));
  assert.equal(upstream(), 0);
  // Five connections held open through the proxy: TLS done, then idle.
  await sbx.commands.run(
    `nohup python3 -c "
import socket, ssl, time
c = ssl._create_unverified_context()
keep = [c.wrap_socket(socket.create_connection(('${EVIL}', 443), timeout=5), server_hostname='allowed.test') for _ in range(5)]
open('/tmp/held', 'w').write('ok')
time.sleep(600)
" >/dev/null 2>&1 &`,
  );
  for (let i = 0; i < 100 && (await sbx.commands.run('cat /tmp/held 2>/dev/null || true')).stdout !== 'ok'; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(upstream(), 5);
  assert.equal(clients(), 5);
  assert.equal((await metrics()).hutch_egress_connections, 5);
  await sbx.kill();
  for (let i = 0; i < 100 && upstream() + clients() > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(upstream(), 0, 'upstream connections closed');
  assert.equal(clients(), 0, 'sandbox-side connections closed');
  assert.equal((await metrics()).hutch_egress_connections, 0);
});

const putNetwork = (id, body) =>
  fetch(`${hutch.url}/sandboxes/${id}/network`, {
    method: 'PUT',
    headers: { 'X-API-Key': hutch.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });

test('httpsPorts: TLS by SNI on another port, a ClientHello only; kept by updateNetwork and across a pause', async () => {
  const tls8443 = (sbx, name = 'allowed.test') => curl(sbx, `-k https://${name}:8443/ --resolve ${name}:8443:${EVIL}`);
  // Without httpsPorts, 8443 is a port like any other: CIDR rules only.
  const plain = await create({ network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] } });
  try {
    assert.match(await tls8443(plain), /rc=(7|28)/);
  } finally {
    await plain.kill();
  }
  const sbx = await create({
    timeoutMs: 120_000,
    network: { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'], httpsPorts: [8443, 8080, 443] },
  });
  try {
    const before = hits();
    // The proxy connects to the name's own address, on the port the sandbox dialled.
    assert.match(await tls8443(sbx), /^allowed-tls8443 from 192\.0\.3\.10 host=allowed\.test:8443\s+rc=0$/);
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${EVIL}`), /^allowed-tls from 192\.0\.3\.10/);
    assert.match(await curl(sbx, `http://allowed.test/ --resolve allowed.test:80:${EVIL}`), /^allowed-http from 192\.0\.3\.10/);
    // A name not in the list is closed, on an allowed address too.
    assert.match(await tls8443(sbx, 'evil.test'), /rc=(35|56|52)/);
    assert.match(await curl(sbx, `-k https://evil.test:8443/ --resolve evil.test:8443:${GOOD}`), /rc=(35|56|52)/);
    // Plain HTTP on a TLS port is closed unanswered, allowed Host and an HTTP server there or not.
    assert.match(await curl(sbx, `http://allowed.test:8080/ --resolve allowed.test:8080:${GOOD}`), /rc=(52|56)/);
    assert.match(await curl(sbx, `http://allowed.test:8443/ --resolve allowed.test:8443:${GOOD}`), /rc=(52|56)/);
    // Ports in neither list stay dropped.
    assert.match(await curl(sbx, `-k https://allowed.test:9443/ --resolve allowed.test:9443:${GOOD}`), /rc=(7|28)/);
    const seen = hits().slice(before.length);
    assert.equal(seen.split('\n').filter((l) => l.startsWith(EVIL) || l.includes('http8080')).length, 0, seen);
    assert.match(ruleset(), /dport \{[^}]*8443[^}]*\} redirect to :\d+/);

    // The SDK's updateNetwork sends no httpsPorts: they stay.
    await sbx.updateNetwork({ allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'] });
    assert.match(await tls8443(sbx), /^allowed-tls8443 from 192\.0\.3\.10/);
    // A filesystem pause starts it again from its stored settings.
    assert.equal(await sbx.pause({ keepMemory: false }), true);
    await sbx.connect();
    assert.match(await tls8443(sbx), /^allowed-tls8443 from 192\.0\.3\.10/);
    assert.match(await tls8443(sbx, 'evil.test'), /rc=(35|56|52)/);
    // A body with httpsPorts replaces them; 80 is no TLS port.
    let res = await putNetwork(sbx.sandboxId, { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'], httpsPorts: [80] });
    assert.equal(res.status, 400, await res.text());
    res = await putNetwork(sbx.sandboxId, { allowOut: ['allowed.test'], denyOut: ['0.0.0.0/0'], httpsPorts: [] });
    assert.equal(res.status, 204, await res.text());
    assert.match(await tls8443(sbx), /rc=(7|28)/);
    assert.match(await curl(sbx, `-k https://allowed.test/ --resolve allowed.test:443:${EVIL}`), /^allowed-tls from 192\.0\.3\.10/);
    assert.ok(!/dport \{[^}]*8443/.test(ruleset()));
  } finally {
    await sbx.kill();
  }
});
