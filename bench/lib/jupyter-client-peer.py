#!/usr/bin/python3
"""The peer of bench-interpd: Debian's ipykernel driven by Debian's jupyter_client, the way a
Jupyter server drives it (BlockingKernelClient.execute, then wait for the execute_reply on
shell and for `status: idle` on iopub, the same end that interpd waits for).

Run with /usr/bin/python3. Starts one kernel (kernelspec python3, jupyter_client's default TCP
transport on loopback), prints one JSON line {"pid": <kernel pid>} and reads commands, one a
line, from stdin:

  run N CODE   execute CODE (rest of the line) N times; prints {"samples": [ms, ...]}
  quit         shut the kernel down and exit (also on end of input)

Timings are taken here, around each execute, with time.perf_counter().
"""
import json
import sys
import time

from jupyter_client.manager import KernelManager


def execute(kc, code):
    msg_id = kc.execute(code, store_history=True, allow_stdin=False)
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"execution failed: {reply['content']}")
            return


def main():
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        print(json.dumps({"pid": km.provisioner.process.pid}), flush=True)
        for line in sys.stdin:
            cmd = line.rstrip("\n").split(" ", 2)
            if cmd[0] == "run":
                samples = []
                for _ in range(int(cmd[1])):
                    t0 = time.perf_counter()
                    execute(kc, cmd[2])
                    samples.append((time.perf_counter() - t0) * 1000)
                print(json.dumps({"samples": samples}), flush=True)
            elif cmd[0] == "quit":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
