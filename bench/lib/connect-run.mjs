// Runs `true` N times through envd's Connect Start stream at BASE (argv[2]) with the given
// headers (argv[3], JSON) and prints the median and p99 round trip in ms as JSON. Used twice
// by bench-serve: through the gateway, and from inside the sandbox's network namespace
// straight to envd, so that the difference is what the gateway adds.
const [base, headersJson, runsArg] = process.argv.slice(2);
const headers = JSON.parse(headersJson);
const runs = Number(runsArg || 200);

function envelope(obj) {
  const payload = Buffer.from(JSON.stringify(obj));
  const b = Buffer.alloc(5 + payload.length);
  b.writeUInt8(0, 0);
  b.writeUInt32BE(payload.length, 1);
  payload.copy(b, 5);
  return b;
}

const body = envelope({ process: { cmd: '/bin/bash', args: ['-l', '-c', 'true'] }, stdin: false });

async function once() {
  const t0 = process.hrtime.bigint();
  const r = await fetch(`${base}/process.Process/Start`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1', ...headers },
    body,
  });
  const buf = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200 || buf.length < 5 || (buf[buf.length - 3] === undefined)) throw new Error(`status ${r.status}`);
  if (!buf.toString().includes('"end"')) throw new Error(`no end event: ${buf.toString()}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

for (let i = 0; i < 20; i++) await once();
const xs = [];
for (let i = 0; i < runs; i++) xs.push(await once());
xs.sort((a, b) => a - b);
console.log(JSON.stringify({ p50: xs[Math.floor(xs.length / 2)], p99: xs[Math.floor(xs.length * 0.99)] }));
