"""Trims three costs ipykernel pays on every shell message; none changes what a kernel sends.

1. Debug records that no handler prints. traitlets sets the application's logger (IPKernelApp,
   the kernel's `log`) to DEBUG and gives its one handler the application's log_level
   (WARNING), so every execute_request built four LogRecords, each with a walk up the stack
   for its caller, that the handler then dropped. The logger's level is raised to the lowest
   level of the handlers its records reach. Setting `Application.log_level` again (traitlets
   then reconfigures logging) brings back the stock setup and its debug messages.

2. `inspect.signature` twice per execution: ipykernel's `_accepts_cell_id` asks whether
   `do_execute` and `run_cell_async` take a `cell_id` on every execute_request. The answer is
   kept per function (a method replaced by another function is asked about again).

3. dateutil's general parser for every date in a message's header and parent header:
   jupyter_client turns each string that matches its ISO 8601 pattern into a datetime with
   `dateutil.parser.parse`. Python 3.11's `datetime.fromisoformat` reads every form that
   pattern matches ("Z", "+hh:mm", "+hhmm", 1-6 decimals) into the same instant and offset;
   dateutil stays the fallback for anything it refuses. The datetimes carry
   `datetime.timezone` offsets instead of dateutil's `tzutc`/`tzoffset`: equal, and written
   back to JSON identically.

Together, with jupyter_client driving the same ipykernel: see docs/benchmarks.md.
Installed by interpd's setup of every Python kernel (snippet_python_setup in
src/interpd/snippets.c)."""

import logging
import weakref
from datetime import datetime

_installed = False


def install():
    """Installs the three trims once (each where its target exists). Returns True if any was."""
    global _installed
    if _installed:
        return True
    done = [_quiet_kernel_log(), _cached_accepts_cell_id(), _fast_iso_dates()]
    _installed = any(done)
    return _installed


def _quiet_kernel_log():
    try:
        from IPython import get_ipython
        log = get_ipython().kernel.log
    except Exception:
        return False
    logger = log.logger if isinstance(log, logging.LoggerAdapter) else log
    if not isinstance(logger, logging.Logger):
        return False
    level = _lowest_handler_level(logger)
    if level > logger.getEffectiveLevel():
        logger.setLevel(level)
    return True


def _lowest_handler_level(logger):
    """The lowest level a record of logger's can be emitted at: the minimum over the handlers
    it propagates to, or logging.lastResort's when there are none."""
    levels = []
    node = logger
    while node is not None:
        levels.extend(h.level for h in node.handlers)
        node = node.parent if node.propagate else None
    if not levels:
        return logging.lastResort.level if logging.lastResort else logging.CRITICAL + 1
    # A handler at NOTSET takes every record: keep the logger's own level then.
    return max(min(levels), 1)


def _cached_accepts_cell_id():
    try:
        from ipykernel import ipkernel, kernelbase
        accepts = kernelbase._accepts_cell_id
    except (ImportError, AttributeError):
        return False
    answers = weakref.WeakKeyDictionary()

    def cached(meth):
        func = getattr(meth, "__func__", meth)
        try:
            return answers[func]
        except (KeyError, TypeError):
            pass
        answer = accepts(meth)
        try:
            answers[func] = answer
        except TypeError:  # not weakly referenceable: ask every time
            pass
        return answer

    kernelbase._accepts_cell_id = cached
    if getattr(ipkernel, "_accepts_cell_id", None) is accepts:
        ipkernel._accepts_cell_id = cached
    return True


def _fast_iso_dates():
    try:
        from jupyter_client import jsonutil
        dateutil_parse = jsonutil._dateutil_parse
    except (ImportError, AttributeError):
        return False

    def parse_iso8601(s):
        try:
            return datetime.fromisoformat(s)
        except ValueError:
            return dateutil_parse(s)

    jsonutil._dateutil_parse = parse_iso8601
    return True
