#!/usr/bin/env node
// Upload and download of a 256 MiB file through the official SDK against a standalone envd,
// beside the same transfers against Python's http.server (download) and a plain local file
// write (upload: the disk's own ceiling). Also envd's idle RSS and its peak RSS (VmHWM) over the
// transfers. Goals (issue 3): >= 1 GB/s on loopback, peak RSS < 32 MiB, idle RSS < 4 MiB.
// The curl transfers and the local copy run BENCH_REPEAT times each (default 5), interleaved, and
// report the median: on a shared 2-vCPU VM one 256 MiB transfer varies by 2x from run to run.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { startEnvd, freePort } from '../tests/sdk/lib/envd.mjs';

const run = promisify(execFile);
const SIZE = Number(process.env.BENCH_FILE_MIB || 256) * 1024 * 1024;
const REPEAT = Number(process.env.BENCH_REPEAT || 5);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function statusKiB(pid, field) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = s.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function row(name, unit, hutch, peer, peerName, goal) {
  console.log(JSON.stringify({ name, unit, hutch, peer, peer_name: peerName, goal }));
}

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-bench-'));
  const src = path.join(dir, 'src.bin');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
  const fd = fs.openSync(src, 'w');
  for (let off = 0; off < SIZE; off += chunk.length) fs.writeSync(fd, chunk);
  fs.closeSync(fd);

  const envd = await startEnvd();
  let py;
  try {
    await new Promise((r) => setTimeout(r, 300));
    const idleKiB = statusKiB(envd.child.pid, 'VmRSS');
    const sbx = await envd.sandbox();
    const target = path.join(dir, 'up.bin');

    const upS = await timed(() =>
      sbx.files.write(target, Readable.toWeb(fs.createReadStream(src, { highWaterMark: 1 << 20 })))
    );
    let got = 0;
    const downS = await timed(async () => {
      const stream = await sbx.files.read(target, { format: 'stream' });
      for await (const c of stream) got += c.length;
    });
    if (got !== SIZE) throw new Error(`downloaded ${got} bytes, expected ${SIZE}`);
    const peakKiB = statusKiB(envd.child.pid, 'VmHWM');

    // Peers, same bytes, same machine, same run.
    const port = await freePort();
    py = spawn('/usr/bin/python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1',
      '--directory', dir], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      try {
        await fetch(`http://127.0.0.1:${port}/`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const pyIdleKiB = statusKiB(py.pid, 'VmRSS');
    let pyGot = 0;
    const pyS = await timed(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/src.bin`);
      for await (const c of r.body) pyGot += c.length;
    });
    if (pyGot !== SIZE) throw new Error('python download size mismatch');
    const pyPeakKiB = statusKiB(py.pid, 'VmHWM');

    // The same transfers with curl, which is no bottleneck itself: envd's own throughput.
    const curl = async (args) => {
      const t0 = process.hrtime.bigint();
      await run('curl', ['-sS', '--fail', '-o', '/dev/null', ...args]);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    // Each upload and copy goes to a new file; the previous one is removed untimed.
    const up2 = path.join(dir, 'up2.bin');
    const copy = path.join(dir, 'copy.bin');
    const downs = [], ups = [], pys = [], copies = [];
    for (let i = 0; i < REPEAT; i++) {
      downs.push(await curl([`${envd.url}/files?path=${encodeURIComponent(target)}`]));
      pys.push(await curl([`http://127.0.0.1:${port}/src.bin`]));
      fs.rmSync(up2, { force: true });
      ups.push(await curl(['-X', 'POST', '-H', 'Content-Type: application/octet-stream', '-T', src,
        `${envd.url}/files?path=${encodeURIComponent(up2)}`]));
      fs.rmSync(copy, { force: true });
      copies.push(await timed(() => fs.promises.copyFile(src, copy)));
    }
    if (fs.statSync(up2).size !== SIZE) throw new Error('curl upload size mismatch');
    const curlDown = median(downs), curlUp = median(ups), curlPy = median(pys), localS = median(copies);
    const curlPeak = statusKiB(envd.child.pid, 'VmHWM');
    const gbsList = (xs) => xs.map((x) => (SIZE / x / 1e9).toFixed(2)).join(' ');
    console.error(`GB/s per run: envd down ${gbsList(downs)}; python down ${gbsList(pys)}; ` +
      `envd up ${gbsList(ups)}; local copy ${gbsList(copies)}`);

    const gbs = (s) => SIZE / s / 1e9;
    row(`download 256 MiB with curl (median of ${REPEAT})`, 'GB/s', gbs(curlDown), gbs(curlPy), 'python3 -m http.server', '>= 1 GB/s');
    row(`upload 256 MiB with curl, octet-stream (median of ${REPEAT})`, 'GB/s', gbs(curlUp), gbs(localS), 'local file copy', '>= 1 GB/s');
    row('envd peak RSS after curl transfers', 'MiB', curlPeak / 1024, null, '-', '< 32 MiB');
    row('upload 256 MiB (SDK files.write stream)', 'GB/s', gbs(upS), gbs(localS), 'local file copy', '>= 1 GB/s');
    row('download 256 MiB (SDK files.read stream)', 'GB/s', gbs(downS), gbs(pyS), 'python3 -m http.server', '>= 1 GB/s');
    row('envd peak RSS during transfers', 'MiB', peakKiB / 1024, pyPeakKiB / 1024, 'python3 -m http.server', '< 32 MiB');
    row('envd idle RSS', 'MiB', idleKiB / 1024, pyIdleKiB / 1024, 'python3 -m http.server', '< 4 MiB');
  } finally {
    if (py) {
      py.kill();
      await once(py, 'exit');
    }
    await envd.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
