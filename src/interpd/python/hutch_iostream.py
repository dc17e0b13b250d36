"""Makes a flush of a kernel's stdout or stderr with nothing written since the last one free.

ipykernel's OutStream.flush() hands the flush to the IOPub thread and waits for it (two
callbacks on that thread, a threading.Event) even when nothing was written. The kernel itself
flushes both streams three times around every execution (before the result is published,
before the reply, before the idle status): six round trips to another thread, about 1.5 ms of
a 6-7 ms `runCode("1+1")` on the development VM (a side test with jupyter_client on the same
ipykernel: 6.99 -> 5.46 ms p50).

The skip is exact: a stream is dirty from any write until a flush that started after it has
finished its round trip, and only a clean stream skips. Such a flush waits for every callback
scheduled before it on the IOPub thread, so output written before the skipped flush is
already published, in order, before whatever the kernel publishes next. Echoed streams are
flushed as before.

The same install sets the kernel's `_execute_sleep` to 0. ipykernel sleeps that long (0.5 ms,
0.6 ms measured) after those flushes and before the execute_reply, a mitigation its source calls
a FIXME for output that did not seem to reach clients: a flush returns once the IOPub thread has
queued the stream message, and the sleep gives that thread a head start on sending it before
the reply goes out on the shell socket. Nothing orders two sockets, though, and interpd reads an
execution until both its execute_reply and its idle status, which the same thread sends after
every message queued before it, so no output is lost or reordered on IOPub without the sleep;
it only delays the reply (`1+1` with jupyter_client on the same ipykernel: 0.2-0.7 ms p50 less
of 4-4.7 ms).

And it drops the kernel's control-queue flush before every shell message: ipykernel 6.17 wakes
its control thread for each one (a callback on that thread's event loop, which then completes
a future on the main thread's loop: two thread hops and their GIL hand-overs), so that control
messages sent before the shell message are handled first; it does not even wait for that
(dispatch_shell awaits the coroutine, not the future it returns). interpd sends a Python kernel
no control message at all (it interrupts with SIGINT, as the kernelspec's default interrupt
mode says), so the flush has nothing to order. `1+1` with jupyter_client on the same ipykernel,
10 alternating rounds of 100: 3.58 -> 3.41 and 4.06 -> 3.82 ms p50.

Installed by interpd's setup of every Python kernel (snippet_python_setup in
src/interpd/snippets.c) for the ipykernel version it was written against (Debian 12's 6.17)."""

import threading

_VERSION_PREFIX = "6.17."
_installed = False


def install():
    """Wraps OutStream.write and OutStream.flush once. Returns True when installed."""
    global _installed
    if _installed:
        return True
    try:
        import ipykernel
        from ipykernel.iostream import OutStream
    except ImportError:
        return False
    if not ipykernel.__version__.startswith(_VERSION_PREFIX):
        return False
    write, flush = OutStream.write, OutStream.flush
    lock = threading.Lock()

    def counted_write(self, string):
        n = write(self, string)
        with lock:
            self._hutch_writes = getattr(self, "_hutch_writes", 0) + 1
        return n

    def lazy_flush(self):
        with lock:
            writes = getattr(self, "_hutch_writes", 0)
            clean = writes == getattr(self, "_hutch_flushed", 0)
        if clean and self.echo is None:
            return
        flush(self)
        # Everything written before this flush began is published now.
        with lock:
            self._hutch_flushed = max(getattr(self, "_hutch_flushed", 0), writes)

    OutStream.write = counted_write
    OutStream.flush = lazy_flush
    kernel = _kernel()
    if kernel is not None:
        _no_execute_sleep(kernel)
        _no_control_flush(kernel)
    _installed = True
    return True


def _kernel():
    """The running ipykernel Kernel, or None (not in a kernel, or no IPython)."""
    try:
        from IPython import get_ipython
        return getattr(get_ipython(), "kernel", None)
    except Exception:
        return None


def _no_execute_sleep(kernel):
    if hasattr(kernel, "_execute_sleep"):
        kernel._execute_sleep = 0.0


def _no_control_flush(kernel):
    if not hasattr(kernel, "_flush_control_queue"):
        return

    async def no_control_flush():
        return None

    kernel._flush_control_queue = no_control_flush
