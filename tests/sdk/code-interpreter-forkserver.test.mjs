// code-interpreter-v1's Python kernels forked from hutch's kernel fork server (src/forkserver/),
// through the official @e2b/code-interpreter SDK: the kernel is in its sandbox exactly like the
// sandbox's other processes (identity, capabilities, seccomp, namespaces, cgroup), shares the
// fork server's pages, draws its own random numbers, holds no host path or file, and carries
// nothing of another sandbox; `--kernel-fork-server off` gives each sandbox its own kernel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { Sandbox } from '@e2b/code-interpreter';
import { startHutch } from './lib/hutch.mjs';

let hutch;
let forkServerPid;

// The fork server: hutch serve's child running from a memfd copy of kernel-forkserver.
function findForkServer(parent) {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const ppid = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === parent && fs.readlinkSync(`/proc/${pid}/exe`).startsWith('/memfd:kernel-forkserver')) return Number(pid);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

before(async () => {
  hutch = await startHutch();
  // Started on first use only.
  assert.equal(findForkServer(hutch.child.pid), undefined, 'no fork server before a code-interpreter create');
});

after(async () => {
  const { code, leftovers } = await hutch.stop();
  assert.equal(code, 0, hutch.log());
  assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
  assert.ok(forkServerPid && !fs.existsSync(`/proc/${forkServerPid}`), 'the fork server ended with hutch serve');
});

// What a process knows about where it runs, as JSON; the same program runs in the kernel and,
// for comparison, as a command of the same sandbox.
const PROBE = `
import json, os, socket, sys
status = {l.split(':')[0]: l.split(':', 1)[1].strip() for l in open('/proc/self/status')
          if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp', 'Uid', 'Gid', 'Groups'))}
fds = []
for f in os.listdir('/proc/self/fd'):
    try:
        fds.append(os.readlink('/proc/self/fd/' + f))
    except OSError:
        pass
print(json.dumps({
    'forked': 'hutch_forkserver' in sys.modules,
    'prebuilt': getattr(sys.modules.get('hutch_forkserver'), '_prebuilt', None) is not None,
    'status': status,
    'ns': {n: os.readlink('/proc/self/ns/' + n) for n in sorted(os.listdir('/proc/self/ns'))},
    'cgroup': open('/proc/self/cgroup').read(),
    'hostname': socket.gethostname(),
    'root': os.stat('/').st_ino,
    'exe': os.readlink('/proc/self/exe'),
    'fds': fds,
    'home': os.environ.get('HOME'),
}))
`;

async function kernelProbe(sbx) {
  const r = await sbx.runCode(PROBE);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  return JSON.parse(r.logs.stdout.join(''));
}

test('the kernel comes from the fork server and is confined like the sandbox own processes', async () => {
  // The first create starts the fork server and waits for it.
  const sbx = await Sandbox.create(hutch.opts);
  forkServerPid = findForkServer(hutch.child.pid);
  assert.ok(forkServerPid, 'the fork server runs as a child of hutch serve');
  try {
    const k = await kernelProbe(sbx);
    const c = JSON.parse((await sbx.commands.run(`/usr/bin/python3 -c "${PROBE.replaceAll('"', '\\"')}"`)).stdout);
    assert.equal(k.forked, true, 'the kernel was forked from the fork server');
    assert.equal(k.prebuilt, true, "its application, kernel and shell objects were built in the fork server");
    assert.equal(c.forked, false);
    assert.deepEqual(k.status, c.status, 'identity, capabilities, no_new_privs and seccomp as a command of the sandbox');
    assert.equal(k.status.Uid.split(/\s+/)[0], '1000');
    assert.equal(k.status.CapEff, '0000000000000000');
    assert.equal(k.status.Seccomp, '2');
    const { pid_for_children: _k, ...kns } = k.ns;
    const { pid_for_children: _c, ...cns } = c.ns;
    assert.deepEqual(kns, cns, 'every namespace is the sandbox');
    assert.equal(k.cgroup, c.cgroup, 'the sandbox cgroup');
    assert.equal(k.hostname, c.hostname);
    assert.equal(k.root, c.root, 'the sandbox root filesystem');
    assert.equal(k.home, '/home/user');
    // No host file is reachable through the kernel process: its executable is a sealed memfd
    // copy, its fds are its own (sockets, pipes, /dev/null, files it opened in the sandbox).
    assert.match(k.exe, /^\/memfd:kernel-forkserver/);
    // ... sealed: not writable, not even by the sandbox's root (runc's CVE-2019-5736).
    const write = await sbx.runCode(String.raw`import os, subprocess
def sudo(code):
    return subprocess.run(['sudo', '-n', '/usr/bin/python3', '-c', code], capture_output=True, text=True)
print(sudo('pass').returncode, sudo(f'open("/proc/{os.getpid()}/exe", "r+b").write(b"x")').returncode)`);
    assert.equal(write.error, undefined, JSON.stringify(write.error));
    assert.equal(write.logs.stdout.join('').trim(), '0 1', "root in the sandbox, yet the kernel's executable is not writable");
    for (const f of k.fds)
      assert.match(f, /^(socket:|pipe:|anon_inode:|\/dev\/null$|\/home\/user\/|\/tmp\/\.hutch-kernel-)/, `fd to ${f}`);
    // State is kept, and the kernel works like any: pandas, charts.
    assert.equal((await sbx.runCode('x = 41')).error, undefined);
    assert.equal((await sbx.runCode('x + 1')).text, '42');
    const chart = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()');
    assert.equal(chart.error, undefined, JSON.stringify(chart.error));
    assert.equal(chart.results[0].chart?.type, 'line');
    assert.equal(typeof chart.results[0].png, 'string', 'the figure as a PNG too (inline backend set up in the forked kernel)');
    const df = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})');
    assert.ok(df.results[0].data, 'a DataFrame result');
  } finally {
    await sbx.kill();
  }
});

// The kernel's objects built in the fork server, with what belongs to the sandbox redone in
// the kernel's process (hutch_forkserver._start_prebuilt).
const IPYTHON_STATE = `
import json, os, threading
ip = get_ipython()
hm = ip.history_manager
paths = {'hist': str(hm.hist_file), 'profile': ip.profile_dir.location, 'kernel_profile': ip.kernel.profile_dir.location,
         'db': str(ip.db.root), 'home': ip.home_dir, 'ipython_dir': ip.ipython_dir, 'dh': [str(d) for d in _dh]}
print(json.dumps({
    'paths': paths,
    'history_ns': In is hm.input_hist_parsed and Out is hm.output_hist and _ih is In,
    'history_thread': hm.save_thread is not None and hm.save_thread.is_alive(),
    'ident': ip.kernel.ident,
    'topic': ip.displayhook.topic.decode(),
    'key': ip.kernel.session.key.decode(),
    'threads': sorted(t.name for t in threading.enumerate()),
}))
`;

test('kernels share the fork server pages, yet draw their own random numbers', async () => {
  const a = await Sandbox.create(hutch.opts);
  const b = await Sandbox.create(hutch.opts);
  try {
    const state = async (sbx) => {
      const r = await sbx.runCode(IPYTHON_STATE);
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      return JSON.parse(r.logs.stdout.join(''));
    };
    const [sa, sb] = [await state(a), await state(b)];
    for (const p of Object.values(sa.paths).flat())
      assert.match(p, /^\/home\/user(\/\.ipython(\/|$)|$)/, `the sandbox user's profile and home: ${JSON.stringify(sa.paths)}`);
    assert.equal(sa.paths.hist, '/home/user/.ipython/profile_default/history.sqlite');
    assert.equal(sa.history_ns, true, 'In, Out and _ih are the history of this kernel');
    assert.equal(sa.history_thread, true);
    assert.ok(sa.threads.includes('IPythonHistorySavingThread') && sa.threads.includes('Control'), sa.threads.join());
    assert.notEqual(sa.key, sb.key, 'each kernel signs its messages with its own key');
    assert.notEqual(sa.ident, sb.ident, 'each kernel has its own id');
    assert.ok(sa.topic.includes(sa.ident));
    assert.match((await a.runCode('%history -n 1')).logs.stdout.join(''), /IPYTHON_STATE|import json, os, threading/);
    const draw = 'import json, random, numpy as np\nprint(json.dumps([random.random(), float(np.random.rand())]))';
    const ra = JSON.parse((await a.runCode(draw)).logs.stdout.join(''));
    const rb = JSON.parse((await b.runCode(draw)).logs.stdout.join(''));
    assert.notEqual(ra[0], rb[0], 'random is reseeded in each kernel');
    assert.notEqual(ra[1], rb[1], "numpy's global generator is reseeded in each kernel");
    const rollup = await a.runCode(
      "print({l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.split(':')[0] in ('Rss', 'Pss', 'Shared_Clean', 'Shared_Dirty')})",
    );
    const m = JSON.parse(rollup.logs.stdout.join('').replaceAll("'", '"'));
    const sharedKiB = m.Shared_Clean + m.Shared_Dirty;
    assert.ok(sharedKiB > 20 * 1024, `the kernel shares pages with the fork server: ${JSON.stringify(m)}`);
    assert.ok(m.Pss < m.Rss, `its proportional share is below its resident size: ${JSON.stringify(m)}`);
  } finally {
    await a.kill();
    await b.kill();
  }
});

// Whether the kernel's own readable memory (regions of at most 1 GiB) holds head + tail. The
// program holds the two halves apart and never joins them, so only a copy of the whole string
// that was there before can match.
const SEARCH = (head, tail) => `
import re
head, tail = ${JSON.stringify(head)}.encode(), ${JSON.stringify(tail)}.encode()
CHUNK, OVERLAP = 8 << 20, len(head) + len(tail)

def holds(data):
    i = data.find(head)
    while i >= 0:
        if data[i + len(head):i + len(head) + len(tail)] == tail:
            return True
        i = data.find(head, i + 1)
    return False

found = False
with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
    for line in maps:
        m = re.match(r'([0-9a-f]+)-([0-9a-f]+) r', line)
        if found or not m or '[vvar' in line or '[vsyscall' in line:
            continue
        start, end = int(m.group(1), 16), int(m.group(2), 16)
        if end - start > 1 << 30:
            continue
        for at in range(start, end, CHUNK):
            try:
                mem.seek(at)
                data = mem.read(min(CHUNK + OVERLAP, end - at))
            except (OSError, ValueError, OverflowError):
                break
            if holds(data):
                found = True
                break
print(found)
`;

test("a sandbox's env vars never reach another sandbox's kernel", async () => {
  const head = `S${randomBytes(8).toString('hex')}`;
  const tail = randomBytes(8).toString('hex');
  const secret = head + tail;
  // Padded in front: a later, shorter request would overwrite the start of this one's bytes.
  const a = await Sandbox.create({ ...hutch.opts, envs: { HUTCH_TEST_SECRET: `${'p'.repeat(4096)}${secret}` } });
  let b;
  try {
    // The kernel has it (compared, not printed: no copy of it may reach the kernel's memory
    // from this test other than the environment's).
    const has = await a.runCode(`import os, hashlib\nhashlib.sha256(os.environ["HUTCH_TEST_SECRET"][4096:].encode()).hexdigest()`);
    assert.match(has.text, new RegExp(createHash('sha256').update(secret).digest('hex')));
    const inA = await a.runCode(SEARCH(head, tail));
    assert.equal(inA.logs.stdout.join('').trim(), 'True', 'the search finds what is there');
    b = await Sandbox.create(hutch.opts);
    assert.equal((await kernelProbe(b)).forked, true);
    const inB = await b.runCode(SEARCH(head, tail));
    assert.equal(inB.error, undefined, JSON.stringify(inB.error));
    assert.equal(inB.logs.stdout.join('').trim(), 'False', "the other sandbox's env var is in this kernel's memory");
  } finally {
    await a.kill();
    if (b) await b.kill();
  }
});

test('--kernel-fork-server off: each sandbox starts its own kernel', async () => {
  const own = await startHutch(['--kernel-fork-server', 'off']);
  try {
    const sbx = await Sandbox.create(own.opts);
    try {
      assert.equal((await kernelProbe(sbx)).forked, false);
      assert.equal((await sbx.runCode('1 + 1')).text, '2');
    } finally {
      await sbx.kill();
    }
    assert.equal(findForkServer(own.child.pid), undefined);
  } finally {
    const { code, leftovers } = await own.stop();
    assert.equal(code, 0, own.log());
    assert.deepEqual(leftovers, []);
  }
});

// KSM's knobs (host-wide): the test turns it on for its own kernels and puts them back after.
const KSM = '/sys/kernel/mm/ksm';
const ksmStat = async (sbx) => {
  const r = await sbx.runCode("print(open('/proc/self/ksm_stat').read())");
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  return Object.fromEntries(r.logs.stdout.join('').trim().split('\n').map((l) => l.split(/:?\s+/)));
};
const [major, minor] = os.release().split('.').map(Number);
const ksmWritable = () => {
  try {
    fs.accessSync(`${KSM}/run`, fs.constants.W_OK); // not where /sys is read-only (a container)
    return true;
  } catch {
    return false;
  }
};
const noKsm = !ksmWritable() || major < 6 || (major === 6 && minor < 4);

test('--kernel-memory-merge: KSM merges the pages the kernels copied, and only theirs', { skip: noKsm && 'no KSM, its knobs read-only, or Linux < 6.4' }, async () => {
  await assert.rejects(startHutch(['--kernel-memory-merge', '--kernel-fork-server', 'off']), /needs the kernel fork server/);
  const saved = Object.fromEntries(['run', 'pages_to_scan', 'sleep_millisecs'].map((k) => [k, fs.readFileSync(`${KSM}/${k}`, 'utf8').trim()]));
  const merging = await startHutch(['--kernel-memory-merge']);
  const sandboxes = [];
  try {
    if (saved.run !== '1') assert.match(merging.log(), /KSM is not running/, 'a server that cannot merge yet says so');
    // A full pass over the kernels' pages in well under a second here; merging needs two.
    fs.writeFileSync(`${KSM}/pages_to_scan`, '4000');
    fs.writeFileSync(`${KSM}/sleep_millisecs`, '10');
    fs.writeFileSync(`${KSM}/run`, '1');
    for (let i = 0; i < 2; i++) sandboxes.push(await Sandbox.create(merging.opts));
    const [a, b] = sandboxes;
    assert.equal((await kernelProbe(a)).forked, true);
    let stat;
    for (const deadline = Date.now() + 30000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 500))) {
      stat = await ksmStat(a);
      if (Number(stat.ksm_merging_pages) >= 256) break;
    }
    assert.equal(stat.ksm_merge_any, 'yes', JSON.stringify(stat));
    assert.ok(Number(stat.ksm_merging_pages) >= 256, `at least 1 MiB of the kernel's pages merged: ${JSON.stringify(stat)}`);
    // Merged pages are copied again when written: the kernels keep working, each with its state.
    await a.runCode('x = 40');
    await b.runCode('x = 1');
    assert.equal((await a.runCode('x + 2')).text, '42');
    assert.equal((await b.runCode('x + 2')).text, '3');
    // Only the kernels (and what they start): the sandbox's commands are not offered to KSM, and
    // the kernel's code cannot withdraw or widen the choice (seccomp refuses PR_SET_MEMORY_MERGE).
    const cmd = await a.commands.run('grep -E "ksm_merge_any|ksm_mergeable" /proc/self/ksm_stat');
    assert.match(cmd.stdout, /ksm_merge_any: no/);
    assert.match(cmd.stdout, /ksm_mergeable: no/);
    const prctl = await a.runCode('import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.prctl(67, 0, 0, 0, 0), ctypes.get_errno(), libc.prctl(68, 0, 0, 0, 0))');
    assert.equal(prctl.logs.stdout.join('').trim(), '-1 22 1', 'PR_SET_MEMORY_MERGE refused (EINVAL), PR_GET_MEMORY_MERGE says 1');
    // Without the option (the suite's default server), a kernel is not offered to KSM.
    const plain = await Sandbox.create(hutch.opts);
    try {
      assert.equal((await ksmStat(plain)).ksm_merge_any, 'no');
    } finally {
      await plain.kill();
    }
  } finally {
    for (const s of sandboxes) await s.kill();
    for (const k of ['run', 'pages_to_scan', 'sleep_millisecs']) fs.writeFileSync(`${KSM}/${k}`, saved[k]);
    const { code, leftovers } = await merging.stop();
    assert.equal(code, 0, merging.log());
    assert.deepEqual(leftovers, []);
  }
});
