#!/usr/bin/python3
"""Checks that a shared library exports only hutch_* symbols (CONVENTIONS "Names"), and at
least the core of the public API. Usage: check-exports.py LIBHUTCH.so; prints TAP."""
import subprocess
import sys

lib = sys.argv[1]
out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
names = [line.split()[-1] for line in out.splitlines() if line.strip()]
foreign = [n for n in names if not n.startswith("hutch_")]
must = {"hutch_client_new", "hutch_client_free", "hutch_strerror", "hutch_client_last_message",
        "hutch_sandbox_create", "hutch_sandbox_list", "hutch_sandbox_info", "hutch_sandbox_kill",
        "hutch_exec", "hutch_file_upload", "hutch_file_download"}
missing = sorted(must - set(names))
print("1..2")
print(("ok" if not foreign else "not ok") + f" 1 - only hutch_* exported {foreign[:10]}")
print(("ok" if not missing else "not ok") + f" 2 - the public API is exported {missing}")
sys.exit(1 if foreign or missing else 0)
