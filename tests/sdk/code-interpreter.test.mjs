// The official @e2b/code-interpreter SDK, unmodified, against a real `hutch serve`: the
// code-interpreter-v1 template (base + interpd, kernels preloaded) through the gateway on port
// 49999 (e2b-compat §4). Charts and rich display are in code-interpreter-charts.test.mjs, the
// warm pool in code-interpreter-pool.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, NotFoundError, TimeoutError, SandboxError } from '@e2b/code-interpreter';
import { startHutch } from './lib/hutch.mjs';

let hutch;
let sbx; // shared by the tests whose state does not matter

before(async () => {
  hutch = await startHutch();
  sbx = await Sandbox.create(hutch.opts); // the SDK's default template: code-interpreter-v1
});

after(async () => {
  try {
    if (sbx) await sbx.kill();
  } finally {
    const { code, leftovers } = await hutch.stop();
    assert.equal(code, 0, hutch.log());
    assert.deepEqual(leftovers, [], 'processes or directories of the instance left behind');
  }
});

// The SDK puts the server's body into the message of a 4xx/5xx error only with diagnostics on
// (E2B_USER_AGENT_SOURCE=ci, read when a connection config is made): a second handle on the
// shared sandbox, made that way.
let diagSbx;
async function diagnostic() {
  if (diagSbx) return diagSbx;
  const saved = process.env.E2B_USER_AGENT_SOURCE;
  process.env.E2B_USER_AGENT_SOURCE = 'ci';
  try {
    diagSbx = await Sandbox.connect(sbx.sandboxId, hutch.opts);
  } finally {
    if (saved === undefined) delete process.env.E2B_USER_AGENT_SOURCE;
    else process.env.E2B_USER_AGENT_SOURCE = saved;
  }
  return diagSbx;
}

// runCode clears its request timer (requestTimeoutMs, 60 s) only when the response is a 2xx: a
// call that the server refuses leaves it running, which keeps node (and the test file) alive for
// a minute. Calls expected to fail pass this instead.
const NO_TIMER = { requestTimeoutMs: 0 };

// A fresh python context, so that execution counts and names start from nothing.
async function freshContext(opts = {}) {
  return sbx.createCodeContext({ language: 'python', ...opts });
}

test('the default template is code-interpreter-v1 and 1+1 is the main result "2"', async () => {
  const info = await sbx.getInfo();
  assert.equal(info.templateId, 'code-interpreter-v1');
  const ctx = await freshContext();
  const r = await sbx.runCode('1+1', { context: ctx });
  assert.equal(r.text, '2');
  assert.equal(r.results.length, 1);
  assert.equal(r.results[0].isMainResult, true);
  assert.equal(r.results[0].text, '2');
  assert.deepEqual(r.logs, { stdout: [], stderr: [] });
  assert.equal(r.error, undefined);
  assert.equal(r.executionCount, 1);
  // A str's repr loses one pair of quotes, as E2B's server does.
  assert.equal((await sbx.runCode('"a" + "b"', { context: ctx })).text, 'ab');
  // No result for a statement; the count goes on.
  const none = await sbx.runCode('y = 3', { context: ctx });
  assert.deepEqual(none.results, []);
  assert.equal(none.text, undefined);
  assert.equal(none.executionCount, 3);
  await sbx.removeCodeContext(ctx);
});

test('stdout and stderr are logged in order, each chunk as the kernel sent it', async () => {
  const r = await sbx.runCode(
    'import sys\nprint("out one")\nsys.stdout.flush()\nprint("err one", file=sys.stderr)\nsys.stderr.flush()\nprint("out two")'
  );
  assert.deepEqual(r.logs.stdout, ['out one\n', 'out two\n']);
  assert.deepEqual(r.logs.stderr, ['err one\n']);
  assert.deepEqual(r.results, []);
  assert.equal(r.error, undefined);
});

test('a flush with nothing written is skipped (hutch_iostream), and no output crosses into the next call', async () => {
  const r = await sbx.runCode('import sys; print(type(sys.stdout).flush.__module__, type(sys.stderr).flush.__module__)');
  assert.deepEqual(r.logs.stdout, ['hutch_iostream hutch_iostream\n']);
  // Its install also drops ipykernel's sleep before each execute_reply and its control-queue
  // flush before each shell message.
  assert.equal((await sbx.runCode('get_ipython().kernel._execute_sleep')).text, '0.0');
  assert.equal((await sbx.runCode('get_ipython().kernel._flush_control_queue.__name__')).text, 'no_control_flush');
  // Output written just before the result and the idle status (and without a newline, so no
  // line flush) must belong to its own call: a flush wrongly skipped would let it reach the
  // next call or not at all.
  for (let i = 0; i < 30; i++) {
    const x = await sbx.runCode(`import sys; print(${i}, end=""); sys.stderr.write("e${i}"); ${i} * 2`);
    assert.equal(x.logs.stdout.join(''), String(i));
    assert.equal(x.logs.stderr.join(''), `e${i}`);
    assert.equal(x.text, String(i * 2));
  }
});

test('hutch_dispatch is installed in a sandbox\'s kernel: no debug records, cached cell-id checks, fast dates', async () => {
  const r = await sbx.runCode(
    [
      'import json, logging, hutch_dispatch',
      'from ipykernel import kernelbase',
      'from jupyter_client import jsonutil',
      'from dateutil.parser import parse',
      'log = get_ipython().kernel.log',
      'd = get_ipython().kernel.get_parent()["header"]["date"]',
      'print(json.dumps([hutch_dispatch._installed, log.isEnabledFor(logging.DEBUG), log.isEnabledFor(logging.WARNING),',
      '  kernelbase._accepts_cell_id.__name__, jsonutil._dateutil_parse is not parse, d.utcoffset().total_seconds()]))',
    ].join('\n')
  );
  assert.equal(r.error, undefined);
  assert.deepEqual(JSON.parse(r.logs.stdout.join('')), [true, false, true, 'cached', true, 0]);
});

test('builtin scalar results are text only (hutch_display\'s fast path), and a formatter registered for int wins', async () => {
  const ctx = await freshContext();
  const plain = [
    ['1+1', '2'],
    ['2**100', String(2n ** 100n)],
    ['True', 'True'],
    ['1.5', '1.5'],
    ['3+4j', '(3+4j)'],
    ["b'ab'", "b'ab'"],
    ['"a" + "b"', 'ab'],
  ];
  const check = async (code, text) => {
    const r = await sbx.runCode(code, { context: ctx });
    assert.equal(r.error, undefined, code);
    assert.equal(r.results.length, 1, code);
    assert.equal(r.results[0].isMainResult, true, code);
    assert.equal(r.results[0].text, text, code);
    return r.results[0];
  };
  for (const [code, text] of plain) assert.deepEqual((await check(code, text)).formats(), [], code);
  // The fast path is taken: IPython's other formatters are not run for a plain int.
  const fast = await sbx.runCode('import hutch_display; hutch_display._plain_formatter(get_ipython().display_formatter, 1) is not None', { context: ctx });
  assert.equal(fast.text, 'True');
  await sbx.runCode(
    "get_ipython().display_formatter.formatters['text/html'].for_type(int, lambda x: '<b>%d</b>' % x)",
    { context: ctx }
  );
  const html = await check('40 + 2', '42');
  assert.equal(html.html, '<b>42</b>');
  assert.deepEqual(html.formats(), ['html']);
  assert.equal((await check('True', 'True')).html, '<b>1</b>'); // bool is an int
  assert.deepEqual((await check('1.5', '1.5')).formats(), []);
  await sbx.runCode("get_ipython().display_formatter.formatters['text/html'].pop(int)", { context: ctx });
  for (const [code, text] of plain) assert.deepEqual((await check(code, text)).formats(), [], code);
  await sbx.removeCodeContext(ctx);
});

test('callbacks: onStdout, onStderr, onResult, onError, in the order the code produced them', async () => {
  const events = [];
  const code = [
    'import sys',
    'from IPython.display import display, HTML',
    'print("hello")',
    'display(HTML("<b>shown</b>"))',
    'print("warning", file=sys.stderr)',
    'raise ValueError("broken on purpose")',
  ].join('\n');
  const r = await sbx.runCode(code, {
    onStdout: (m) => events.push(['stdout', m.line, m.error]),
    onStderr: (m) => events.push(['stderr', m.line, m.error]),
    onResult: (res) => events.push(['result', res.html, res.isMainResult]),
    onError: (e) => events.push(['error', e.name, e.value]),
  });
  assert.deepEqual(events, [
    ['stdout', 'hello\n', false],
    ['result', '<b>shown</b>', false],
    ['stderr', 'warning\n', true],
    ['error', 'ValueError', 'broken on purpose'],
  ]);
  assert.deepEqual(r.logs, { stdout: ['hello\n'], stderr: ['warning\n'] });
  assert.equal(r.results.length, 1);
  assert.equal(r.error.name, 'ValueError');
  // The callbacks of a plain result and of stdout timestamps.
  const results = [];
  const out = [];
  const ok = await sbx.runCode('print("x"); 41 + 1', { onResult: (x) => results.push(x), onStdout: (m) => out.push(m) });
  assert.equal(results.length, 1);
  assert.equal(results[0].text, '42');
  assert.equal(results[0].isMainResult, true);
  assert.equal(ok.text, '42');
  assert.equal(out.length, 1);
  assert.equal(typeof out[0].timestamp, 'number');
});

test('executionCount counts the executions of each context', async () => {
  const ctx = await freshContext();
  const counts = [];
  for (const code of ['a = 1', 'a += 1', 'print(a)', 'raise KeyError("k")', 'a'])
    counts.push((await sbx.runCode(code, { context: ctx })).executionCount);
  assert.deepEqual(counts, [1, 2, 3, 4, 5]);
  // Per-call envs run silently around the code: they do not bump the count.
  assert.equal((await sbx.runCode('a', { context: ctx, envs: { E: '1' } })).executionCount, 6);
  await sbx.removeCodeContext(ctx);
});

test('state carries across calls in the default python context', async () => {
  await sbx.runCode('import math\nstate_x = 20\ndef twice(v):\n    return 2 * v');
  const r = await sbx.runCode('state_x += 1\ntwice(state_x) + math.floor(0.5)');
  assert.equal(r.text, '42');
  assert.equal((await sbx.runCode('state_x')).text, '21');
});

test('contexts: create with a cwd, list, independent state, restart, remove', async () => {
  await sbx.runCode('shared_name = "default context"');
  const ctx = await sbx.createCodeContext({ cwd: '/tmp' });
  assert.equal(ctx.language, 'python');
  assert.equal(ctx.cwd, '/tmp');
  assert.match(ctx.id, /^[0-9a-f-]{36}$/);
  try {
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp');
    // The default context's cwd is the user's home.
    assert.equal((await sbx.runCode('import os; os.getcwd()')).text, '/home/user');
    const listed = await sbx.listCodeContexts();
    const mine = listed.find((c) => c.id === ctx.id);
    assert.deepEqual(mine, { id: ctx.id, language: 'python', cwd: '/tmp' });
    assert.ok(listed.some((c) => c.language === 'python' && c.cwd === '/home/user' && c.id !== ctx.id), JSON.stringify(listed));

    // Contexts do not share state.
    const missing = await sbx.runCode('shared_name', { context: ctx });
    assert.equal(missing.error.name, 'NameError');
    assert.equal(missing.error.value, "name 'shared_name' is not defined");
    await sbx.runCode('kept = 7', { context: ctx });
    assert.equal((await sbx.runCode('kept * 6', { context: ctx })).text, '42');

    // Restart: same id, state gone, cwd kept, counts start again.
    await sbx.restartCodeContext(ctx);
    const after = await sbx.runCode('kept', { context: ctx });
    assert.equal(after.error.name, 'NameError');
    assert.equal(after.executionCount, 1);
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp');
    assert.ok((await sbx.listCodeContexts()).some((c) => c.id === ctx.id));
    // The default context was not touched.
    assert.equal((await sbx.runCode('shared_name')).text, 'default context');
  } finally {
    await sbx.removeCodeContext(ctx.id);
  }
  assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id));
  await assert.rejects(sbx.runCode('1', { context: ctx, ...NO_TIMER }), (e) => {
    assert.ok(e instanceof NotFoundError, `${e.name}: ${e.message}`);
    assert.match(e.message, new RegExp(`Context ${ctx.id} not found`));
    return true;
  });
  await assert.rejects(sbx.removeCodeContext(ctx), NotFoundError);
  await assert.rejects(sbx.restartCodeContext(ctx), NotFoundError);
  // The SDK itself refuses context and language together.
  await assert.rejects(sbx.runCode('1', { context: ctx, language: 'python' }), /context or language/);
});

test('a context in a directory that does not exist is refused with the server\'s reason', async () => {
  await assert.rejects(sbx.createCodeContext({ cwd: '/no/such/dir' }), (e) => {
    assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
    assert.match(e.message, /^[45]\d\d /);
    return true;
  });
  const diag = await diagnostic();
  await assert.rejects(diag.createCodeContext({ cwd: '/no/such/dir' }), (e) => {
    assert.match(e.message, /\/no\/such\/dir/);
    return true;
  });
});

test('per-call envs apply to that call only and are restored afterwards', async () => {
  const ctx = await freshContext();
  try {
    await sbx.runCode('import os; os.environ["KEPT"] = "before"; os.environ.pop("FRESH", None)', { context: ctx });
    const r = await sbx.runCode('import os; print(os.environ["KEPT"], os.environ["FRESH"], os.environ["ODD"])', {
      context: ctx,
      envs: { KEPT: 'during', FRESH: 'new', ODD: "quote ' \" $HOME \\n ünï" },
    });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.logs.stdout, ["during new quote ' \" $HOME \\n ünï\n"]);
    const after = await sbx.runCode('import os; (os.environ.get("KEPT"), os.environ.get("FRESH"), os.environ.get("ODD"))', {
      context: ctx,
    });
    assert.equal(after.text, "('before', None, None)");
    // Also restored when the code fails.
    const failed = await sbx.runCode('raise RuntimeError(os.environ["KEPT"])', { context: ctx, envs: { KEPT: 'x' } });
    assert.equal(failed.error.value, 'x');
    assert.equal((await sbx.runCode('os.environ["KEPT"]', { context: ctx })).text, 'before');
    // A subprocess sees them too (they are the kernel's environment, not a Python dict).
    const sub = await sbx.runCode('import subprocess; print(subprocess.run(["sh", "-c", "echo $FRESH"], capture_output=True, text=True).stdout, end="")', {
      context: ctx,
      envs: { FRESH: 'inherited' },
    });
    assert.deepEqual(sub.logs.stdout, ['inherited\n']);
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

test('an invalid env var name is refused', async () => {
  await assert.rejects(sbx.runCode('1', { envs: { 'NOT VALID': 'x' }, ...NO_TIMER }), (e) => {
    assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
    assert.equal(e.message, '400 Bad Request');
    return true;
  });
  const diag = await diagnostic();
  await assert.rejects(diag.runCode('1', { envs: { 'NOT VALID': 'x' }, ...NO_TIMER }), (e) => {
    assert.equal(e.message, "400 Bad Request: invalid environment variable name 'NOT VALID'");
    return true;
  });
});

test('sandbox-wide envs from create are visible in the kernel, and a per-call env overrides them', async () => {
  const own = await Sandbox.create({ ...hutch.opts, envs: { SANDBOX_WIDE: 'from create', OVERRIDDEN: 'wide' } });
  try {
    const r = await own.runCode('import os; (os.environ.get("SANDBOX_WIDE"), os.environ.get("OVERRIDDEN"))');
    assert.equal(r.text, "('from create', 'wide')");
    const o = await own.runCode('os.environ["OVERRIDDEN"]', { envs: { OVERRIDDEN: 'per call' } });
    assert.equal(o.text, 'per call');
    assert.equal((await own.runCode('os.environ["OVERRIDDEN"]')).text, 'wide');
    // Also in a context created later and in R.
    const ctx = await own.createCodeContext();
    assert.equal((await own.runCode('import os; os.environ["SANDBOX_WIDE"]', { context: ctx })).text, 'from create');
    const rr = await own.runCode('Sys.getenv("SANDBOX_WIDE")', { language: 'r' });
    assert.equal(rr.error, undefined);
    assert.equal(rr.results[0].text, '[1] "from create"');
  } finally {
    await own.kill();
  }
});

test('errors: name, value and a traceback that shows the failing line', async () => {
  const ctx = await freshContext();
  try {
    const code = 'def inner():\n    return 1 / 0  # the failing line\n\ndef outer():\n    return inner()\n\nouter()';
    const r = await sbx.runCode(code, { context: ctx });
    assert.equal(r.error.name, 'ZeroDivisionError');
    assert.equal(r.error.value, 'division by zero');
    assert.equal(typeof r.error.traceback, 'string');
    const plain = r.error.traceback.replace(/\x1b\[[0-9;]*m/g, '');
    // IPython's listing: the failing line of each frame, marked with its number.
    assert.match(plain, /----> 2 {5}return 1 \/ 0/);
    assert.match(plain, /----> 5 {5}return inner\(\)/);
    assert.match(plain, /----> 7 outer\(\)/);
    assert.match(plain, /ZeroDivisionError: division by zero$/);
    assert.deepEqual(r.results, []);
    assert.equal(r.text, undefined);
    // Output before the error is kept; a syntax error is an error too.
    const partial = await sbx.runCode('print("before")\nundefined_name', { context: ctx });
    assert.deepEqual(partial.logs.stdout, ['before\n']);
    assert.equal(partial.error.name, 'NameError');
    const syntax = await sbx.runCode('def broken(:\n    pass', { context: ctx });
    assert.equal(syntax.error.name, 'SyntaxError');
    // The context still works afterwards.
    const after = await sbx.runCode('2 * 21', { context: ctx });
    assert.equal(after.text, '42', JSON.stringify(after));
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

test('the call right after a failed one runs, and its per-call envs are restored', async () => {
  // ipykernel aborts execute_requests that arrive just after a failed execution unless they say
  // stop_on_error: false; interpd sends the next one at once, so without that they raced.
  const ctx = await freshContext();
  try {
    for (let i = 0; i < 20; i++) {
      const failed = await sbx.runCode(`raise ValueError("n${i}")`, { context: ctx, envs: { AFTER_ERROR: 'set' } });
      assert.equal(failed.error?.value, `n${i}`);
      const next = await sbx.runCode('import os; os.environ.get("AFTER_ERROR", "restored")', { context: ctx });
      assert.equal(next.text, 'restored', `round ${i}: ${JSON.stringify(next)}`);
      await sbx.runCode('raise KeyError("k")', { context: ctx });
      const plain = await sbx.runCode(`${i} + 1`, { context: ctx });
      assert.equal(plain.text, String(i + 1), `round ${i}: ${JSON.stringify(plain)}`);
    }
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

test('timeout: the SDK gives TimeoutError, the kernel is interrupted, state survives', async () => {
  const ctx = await freshContext();
  try {
    await sbx.runCode('survivor = "still here"', { context: ctx });
    // Far longer than the default 60 s timeout of the next call: if the kernel were not
    // interrupted, that call would wait behind it and time out.
    await assert.rejects(sbx.runCode('import time; time.sleep(600)', { context: ctx, timeoutMs: 1000 }), (e) => {
      assert.ok(e instanceof TimeoutError, `${e.name}: ${e.message}`);
      assert.match(e.message, /Execution timed out/);
      return true;
    });
    const next = await sbx.runCode('survivor', { context: ctx });
    assert.equal(next.error, undefined);
    assert.equal(next.text, 'still here', JSON.stringify(next));
    // And a short call with a generous timeout completes normally.
    const ok = await sbx.runCode('import time; time.sleep(0.2); "slept"', { context: ctx, timeoutMs: 30_000 });
    assert.equal(ok.text, 'slept');
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

test('a kernel that dies mid-execution gives an error and the context restarts on its next call', async () => {
  const ctx = await freshContext();
  try {
    await sbx.runCode('lost = 1', { context: ctx });
    const r = await sbx.runCode('import os, signal; os.kill(os.getpid(), signal.SIGKILL)', { context: ctx });
    assert.equal(r.error.name, 'KernelDied');
    assert.match(r.error.value, /signal 9/);
    const next = await sbx.runCode('lost', { context: ctx });
    assert.equal(next.error.name, 'NameError');
    assert.equal((await sbx.runCode('"alive"', { context: ctx })).text, 'alive');
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

test('R through IRkernel: stdout, results, errors, state and per-call envs', async () => {
  const p = await sbx.runCode('print(1+1)', { language: 'r' });
  assert.equal(p.error, undefined);
  assert.deepEqual(p.logs.stdout, ['[1] 2\n']);
  assert.deepEqual(p.results, []);

  // IRkernel 1.3.2 (Executor$handle_value) sends a visible value as display_data, never as
  // execute_result, so the result is not the main one and Execution.text stays undefined; E2B's
  // server maps it the same way (messaging.py: display_data -> is_main_result False) and E2B's own
  // R tests read results[0].text.
  const v = await sbx.runCode('x <- 1+1; x', { language: 'r' });
  assert.equal(v.error, undefined);
  assert.equal(v.results.length, 1);
  assert.equal(v.results[0].text, '[1] 2');
  assert.equal(v.results[0].isMainResult, false);
  assert.equal(v.text, undefined);
  assert.equal(typeof v.executionCount, 'number');

  assert.equal((await sbx.runCode('x * 21', { language: 'r' })).results[0].text, '[1] 42');
  const e = await sbx.runCode('stop("boom")', { language: 'r' });
  assert.equal(e.error.name, 'ERROR');
  assert.match(e.error.value, /boom/);
  assert.match(e.error.traceback, /stop\("boom"\)/);
  const env = await sbx.runCode('Sys.getenv("R_FOO")', { language: 'r', envs: { R_FOO: 'bar' } });
  assert.equal(env.results[0].text, '[1] "bar"');
  const unset = await sbx.runCode('Sys.getenv("R_FOO", unset = "default")', { language: 'r' });
  assert.equal(unset.results[0].text, '[1] "default"');

  const ctx = await sbx.createCodeContext({ language: 'r', cwd: '/tmp' });
  try {
    assert.equal(ctx.language, 'r');
    assert.equal((await sbx.runCode('getwd()', { context: ctx })).results[0].text, '[1] "/tmp"');
    const missing = await sbx.runCode('x', { context: ctx });
    assert.match(missing.error.value, /object 'x' not found/);
  } finally {
    await sbx.removeCodeContext(ctx);
  }
});

// bash (bash_kernel) and JavaScript (Deno's kernelspec) are run where their kernels are
// installed; elsewhere the test is skipped with interpd's answer, which names what is installed.
for (const [language, code, expect, expression] of [
  ['bash', 'echo "$((40 + 2))"', ['42\n'], null],
  ['javascript', 'console.log(40 + 2)', ['42\n'], 'const forty = 40; forty + 2'],
]) {
  test(`${language} runs where its kernel is installed`, async (t) => {
    const diag = await diagnostic();
    let ctx;
    try {
      ctx = await diag.createCodeContext({ language });
    } catch (e) {
      assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
      // Only "not installed" is a reason to skip; any other failure fails.
      assert.match(e.message, new RegExp(`^400 Bad Request: .*${language}.*python`));
      t.skip(`no ${language} kernel in the sandbox: ${e.message}`);
      return;
    }
    try {
      assert.equal(ctx.language, language);
      const r = await sbx.runCode(code, { context: ctx });
      assert.equal(r.error, undefined);
      assert.deepEqual(r.logs.stdout, expect);
      const env = await sbx.runCode(language === 'bash' ? 'echo "$PER_CALL"' : 'console.log(Deno.env.get("PER_CALL"))', {
        context: ctx,
        envs: { PER_CALL: 'yes' },
      });
      assert.deepEqual(env.logs.stdout, ['yes\n']);
      if (expression) {
        const v = await sbx.runCode(expression, { context: ctx });
        assert.equal(v.text, '42', JSON.stringify(v));
        const err = await sbx.runCode('throw new Error("thrown on purpose")', { context: ctx });
        assert.match(err.error?.value ?? '', /thrown on purpose/, JSON.stringify(err));
      }
    } finally {
      await sbx.removeCodeContext(ctx);
    }
  });
}

test('a language without a kernel: the SDK\'s error, with the server\'s message', async () => {
  await assert.rejects(sbx.runCode('puts 1', { language: 'ruby', ...NO_TIMER }), (e) => {
    assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
    assert.equal(e.message, '400 Bad Request');
    return true;
  });
  await assert.rejects(sbx.createCodeContext({ language: 'ruby' }), (e) => {
    assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
    assert.equal(e.message, '400 Bad Request');
    return true;
  });
  const diag = await diagnostic();
  await assert.rejects(diag.runCode('puts 1', { language: 'ruby', ...NO_TIMER }), (e) => {
    assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
    assert.match(e.message, /^400 Bad Request: unsupported language 'ruby' \(supported: python, r, .*; installed kernels: .*python3/);
    return true;
  });
});

test('a sandbox killed during an execution: TimeoutError saying so, not a hang', async () => {
  const own = await Sandbox.create(hutch.opts);
  let killed = false;
  try {
    assert.equal((await own.runCode('1')).text, '1');
    const started = [];
    // The outcome is taken at once, so the rejection is handled while the kill is awaited.
    const outcome = own
      .runCode('print("started", flush=True)\nimport time; time.sleep(600)', {
        onStdout: (m) => started.push(m.line),
        timeoutMs: 0,
      })
      .then(
        () => assert.fail('runCode returned'),
        (e) => e
      );
    while (started.length === 0) await new Promise((r) => setTimeout(r, 50));
    await own.kill();
    killed = true;
    await assert.rejects(Promise.reject(await outcome), (e) => {
      assert.ok(e instanceof TimeoutError, `${e.name}: ${e.message}`);
      assert.match(e.message, /sandbox was killed while the request was in progress/);
      return true;
    });
  } finally {
    if (!killed) await own.kill();
  }
});

test('a killed sandbox: runCode and the context calls fail with the SDK\'s error', async () => {
  const own = await Sandbox.create(hutch.opts);
  assert.equal((await own.runCode('1')).text, '1');
  await own.kill();
  assert.equal(await own.isRunning(), false);
  for (const call of [() => own.runCode('1', NO_TIMER), () => own.listCodeContexts(), () => own.createCodeContext()]) {
    // The gateway answers 502 {"message": "sandbox not found"}, which the SDK makes a
    // TimeoutError, as with E2B's proxy.
    await assert.rejects(call(), (e) => {
      assert.ok(e instanceof TimeoutError, `${e.name}: ${e.message}`);
      assert.match(e.message, /sandbox not found/);
      return true;
    });
  }
});
