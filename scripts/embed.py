#!/usr/bin/python3
"""Writes a C file that defines `const char NAME[]` holding the bytes of a file, so that a
document (the OpenAPI JSON) ships inside the binary. Usage: embed.py INPUT OUTPUT NAME"""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(out, "w") as f:
    f.write(f"/* Generated from {src.split('/')[-1]} by scripts/embed.py; do not edit. */\n")
    f.write("#include <stddef.h>\n\n")
    f.write(f"extern const char {name}[];\nextern const size_t {name}_len;\n")
    f.write(f"const char {name}[] = {{\n")
    for i in range(0, len(data), 16):
        f.write("    " + ", ".join(str(b) for b in data[i:i + 16]) + ",\n")
    f.write("    0,\n};\n")
    f.write(f"const size_t {name}_len = {len(data)};\n")
