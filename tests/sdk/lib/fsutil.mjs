// Helpers for the files*.test.mjs suites: a temporary directory per suite, removed afterwards,
// and bounded waits for watch events (no sleeps).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function tempDir(prefix = 'hutch-files-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  // World-searchable so that a test may act as `nobody` inside it.
  fs.chmodSync(dir, 0o755);
  return dir;
}

export function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
}

// Collects events and resolves waitFor(pred) when one matches, or rejects after ms.
export class EventLog {
  constructor() {
    this.events = [];
    this.waiters = [];
  }

  push(ev) {
    this.events.push(ev);
    for (const w of [...this.waiters]) {
      if (w.pred(ev)) {
        clearTimeout(w.timer);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(ev);
      }
    }
  }

  waitFor(pred, what, ms = 10000) {
    const hit = this.events.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${what} event within ${ms} ms; got ${JSON.stringify(this.events)}`));
      }, ms);
      this.waiters.push(w);
    });
  }
}

// Stops an envd started by startEnvd() and fails if it died early or its log holds a
// sanitizer report; removes the log when clean.
export async function stopEnvd(envd) {
  const died = envd.child.exitCode !== null || envd.child.signalCode !== null;
  await envd.stop();
  const log = fs.existsSync(envd.logPath) ? fs.readFileSync(envd.logPath, 'utf8') : '';
  if (died || /runtime error|AddressSanitizer|LeakSanitizer/.test(log)) {
    throw new Error(`envd ${died ? 'died' : 'reported a sanitizer error'}; log ${envd.logPath}:\n${log}`);
  }
  fs.rmSync(envd.logPath, { force: true });
}
