#!/usr/bin/env node
// The egress proxy (domain names in network.allowOut), through the official SDK: from inside a
// sandbox, plain HTTP requests each on a new connection and a 64 MiB download, to a server in a
// "world" network namespace this benchmark creates (192.0.4.0/24), once through the proxy (a
// sandbox allowed `bench.test` with everything else denied) and, as the peer in the same run,
// straight through nftables (a sandbox allowed the server's address as a CIDR).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sandbox } from '../tests/sdk/node_modules/e2b/dist/index.mjs';
import { startHutch } from '../tests/sdk/lib/hutch.mjs';

const N = Number(process.env.BENCH_RUNS || 300);
const NS = `hutch-bench-egress-${process.pid}`;
const LINK = `hb${process.pid % 100000}`;
const SERVER_IP = '192.0.4.10';
const row = (name, unit, hutch, peer, peer_name, goal, lower_is_better = true) =>
  console.log(JSON.stringify({ name, unit, hutch, peer, peer_name, goal, lower_is_better }));
const sh = (cmd) => execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'inherit'] }).toString();

const SERVER = `
import http.server, socketserver
BIG = b'x' * (64 << 20)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def do_GET(self):
        body = BIG if self.path == '/big' else b'ok'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
S(('${SERVER_IP}', 80), H).serve_forever()
`;

// N requests, each on a new connection, from Python inside the sandbox: p50 and p99 in ms.
const CLIENT = `
import socket, time, json, sys
ip, n = sys.argv[1], int(sys.argv[2])
ts = []
for _ in range(n + 10):
    t = time.perf_counter()
    s = socket.create_connection((ip, 80))
    s.sendall(b'GET / HTTP/1.1\\r\\nHost: bench.test\\r\\nConnection: close\\r\\n\\r\\n')
    while s.recv(4096):
        pass
    s.close()
    ts.append((time.perf_counter() - t) * 1000)
ts = sorted(ts[10:])
print(json.dumps([ts[len(ts) // 2], ts[min(len(ts) - 1, int(len(ts) * 0.99))]]))
`;

function worldDown() {
  sh(`ip netns pids ${NS} 2>/dev/null | xargs -r kill -9; ip link del ${LINK} 2>/dev/null; ip netns del ${NS} 2>/dev/null; true`);
}

async function measure(sbx, dialled) {
  await sbx.files.write('/tmp/client.py', CLIENT);
  const r = await sbx.commands.run(`python3 /tmp/client.py ${dialled} ${N}`, { timeoutMs: 120000 });
  const [p50, p99] = JSON.parse(r.stdout);
  const d = await sbx.commands.run(
    `curl -sS -o /dev/null -w '%{speed_download}' --resolve bench.test:80:${dialled} http://bench.test/big`,
    { timeoutMs: 120000 },
  );
  return { p50, p99, gbps: Number(d.stdout) / 1e9 };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-bench-egress-'));
worldDown();
sh(
  `ip netns add ${NS} && ip link add ${LINK} type veth peer name wv0 netns ${NS} && ` +
    `ip addr add 192.0.4.1/24 dev ${LINK} && ip link set ${LINK} up && ` +
    `ip -n ${NS} addr add ${SERVER_IP}/24 dev wv0 && ip -n ${NS} link set wv0 up && ip -n ${NS} link set lo up`,
);
fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
const world = spawn('ip', ['netns', 'exec', NS, '/usr/bin/python3', path.join(dir, 'server.py')], { stdio: 'inherit' });
let hutch;
try {
  for (let i = 0; i < 100; i++) {
    try {
      sh(`curl -s -o /dev/null http://${SERVER_IP}/`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  hutch = await startHutch(['--egress-resolve', `bench.test:${SERVER_IP}`]);
  const proxied = await Sandbox.create('base', { ...hutch.opts, network: { allowOut: ['bench.test'], denyOut: ['0.0.0.0/0'] } });
  const direct = await Sandbox.create('base', { ...hutch.opts, allowInternetAccess: false, network: { allowOut: [SERVER_IP] } });
  // The proxied sandbox dials an address the proxy ignores; the direct one the server itself.
  const p = await measure(proxied, '192.0.4.99');
  const d = await measure(direct, SERVER_IP);
  row('HTTP GET on a new connection p50, through the egress proxy (allowOut domain) vs direct (allowOut CIDR)', 'ms', p.p50, d.p50, 'direct', 'proxy adds < 1 ms');
  row('HTTP GET on a new connection p99, proxy vs direct', 'ms', p.p99, d.p99, 'direct', '');
  row('download 64 MiB (curl in the sandbox), proxy vs direct', 'GB/s', p.gbps, d.gbps, 'direct', '', false);
  await proxied.kill();
  await direct.kill();
} finally {
  if (hutch) await hutch.stop();
  world.kill('SIGKILL');
  worldDown();
  fs.rmSync(dir, { recursive: true, force: true });
}
