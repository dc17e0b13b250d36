"""A real ipykernel (Debian's) driven by jupyter_client, for tests of hutch's kernel modules."""
import os
import sys


class Kernel:
    def __init__(self):
        from jupyter_client.kernelspec import KernelSpec
        from jupyter_client.manager import KernelManager
        self.km = KernelManager()
        self.km._kernel_spec = KernelSpec(
            argv=[sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                  "-f", "{connection_file}"],
            display_name="hutch-test", language="python")
        env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1",
                   # register() must switch a headless default to the inline backend.
                   MPLBACKEND="agg")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code, silent=False, timeout=60):
        """Runs a cell; returns (reply status, [(msg_type, content)] of its iopub output)."""
        msg_id = self.kc.execute(code, silent=silent, store_history=not silent)
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
                continue
            if kind != "execute_input":
                out.append((kind, msg["content"]))
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], out

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
