"""`python benches/attempts/v55/sass.py FILE EXPRESSION [OUT]`: compile one instantiation of a
kernel file in cuda/ for sm_90a with NVRTC (no GPU needed) and print its registers and its SASS
opcodes (how NOTES v55 counted the register tiles' instructions per chunk). NVRTC and the CUDA
headers come from the nvidia-* wheels torch installs; cuobjdump from the nvidia-cuda-cuobjdump
wheel (`pip download --no-deps nvidia-cuda-cuobjdump`, unpacked; its bin/ on PATH or in
CUOBJDUMP). Writes OUT.cubin and OUT.sass (default /tmp/sass)."""

import collections
import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

kernels = Path(__file__).resolve().parents[3] / "cuda"
file, expression = sys.argv[1], sys.argv[2]
out = sys.argv[3] if len(sys.argv) > 3 else "/tmp/sass"
roots = importlib.util.find_spec("nvidia").submodule_search_locations
cuda = next(p for r in roots for p in Path(r).glob("cu*") if (p / "include/cuda_fp16.h").exists())
nvrtc = ctypes.CDLL(str(next((cuda / "lib").glob("libnvrtc.so*"))))
cuobjdump = os.environ.get("CUOBJDUMP") or shutil.which("cuobjdump")

program = ctypes.c_void_p()
source = (kernels / file).read_bytes()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, file.encode(), 0, None, None) == 0
assert nvrtc.nvrtcAddNameExpression(program, expression.encode()) == 0
options = [b"--device-as-default-execution-space", b"--std=c++17", f"-I{kernels}".encode(),
           f"-I{cuda / 'include'}".encode(), b"-arch=sm_90a"]  # fmt: skip
failed = nvrtc.nvrtcCompileProgram(
    program, len(options), (ctypes.c_char_p * len(options))(*options)
)
size = ctypes.c_size_t()
nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetProgramLog(program, log)
if failed:
    sys.exit(log.value.decode())
name = ctypes.c_char_p()
nvrtc.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name))
mangled = name.value.decode()
nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size))
cubin = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetCUBIN(program, cubin)
Path(out + ".cubin").write_bytes(cubin.raw)
sass = subprocess.run([cuobjdump, "-sass", "-fun", mangled, out + ".cubin"],
                      capture_output=True, text=True, check=True).stdout  # fmt: skip
Path(out + ".sass").write_text(sass)
usage = subprocess.run([cuobjdump, "-res-usage", out + ".cubin"],
                       capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
for i, line in enumerate(usage):
    if line.strip() == f"Function {mangled}:":
        print(usage[i + 1].strip())
opcodes = collections.Counter()
for line in sass.splitlines():
    found = re.match(r"\s+/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", line)
    if found:
        opcodes[found.group(1)] += 1
print(
    sum(opcodes.values()), "instructions:", ", ".join(f"{k} {v}" for k, v in opcodes.most_common())
)
