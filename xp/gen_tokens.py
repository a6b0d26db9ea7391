"""Writes cuda/wgmma_tokens.cuh: WgmmaTokensS8<N> and WgmmaTokensSS<N, T> for the given N."""
import sys

ns = [int(a) for a in sys.argv[1:]]
out = ["// wgmma with both operands in shared memory, for int8_wgmma_tokens.cu (generated for its",
       "// weight-row counts N): d (64 tokens x N weight rows) += A (64 tokens x k, shared memory) *",
       "// B (k x N, shared memory), both K-major with the 128-byte swizzle (hopper.cuh's descriptor);",
       "// s8 x s8 -> s32 (k 32) and fp16 / bf16 -> fp32 (k 16). Included inside its anonymous",
       "// namespace.",
       "template <int N> struct WgmmaTokensS8;",
       "template <int N, typename T> struct WgmmaTokensSS;",
       "#define TOKENS_R8(i) \"+r\"(d[i + 0]), \"+r\"(d[i + 1]), \"+r\"(d[i + 2]), \"+r\"(d[i + 3]), \\",
       "                     \"+r\"(d[i + 4]), \"+r\"(d[i + 5]), \"+r\"(d[i + 6]), \"+r\"(d[i + 7])",
       "#define TOKENS_F8(i) \"+f\"(d[i + 0]), \"+f\"(d[i + 1]), \"+f\"(d[i + 2]), \"+f\"(d[i + 3]), \\",
       "                     \"+f\"(d[i + 4]), \"+f\"(d[i + 5]), \"+f\"(d[i + 6]), \"+f\"(d[i + 7])",
       "#define TOKENS_ARGS \"l\"(a), \"l\"(b), \"r\"(1)"]


def body(n, kind, ctype, instr, tail):
    regs = n // 2
    parts = [",".join(f"%{i}" for i in range(j, min(j + 16, regs))) for j in range(0, regs, 16)]
    lines = '"\n                 "'.join(p + ("," if k < len(parts) - 1 else "") for k, p in enumerate(parts))
    d8 = ", ".join(f"TOKENS_{kind}8({i})" for i in range(0, regs, 8))
    return f"""  static __device__ __forceinline__ void run({ctype} (&d)[{regs}], unsigned long long a, unsigned long long b) {{
    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{regs + 2}, 0;\\n"
                 "{instr} {{"
                 "{lines}"
                 "}}, %{regs}, %{regs + 1}, p{tail};\\n}}\\n"
                 : {d8}
                 : TOKENS_ARGS);
  }}"""


for n in ns:
    out.append(f"template <> struct WgmmaTokensS8<{n}> {{\n"
               + body(n, "R", "int", f"wgmma.mma_async.sync.aligned.m64n{n}k32.s32.s8.s8", "") + "\n};")
for ty, name in (("__half", "f16"), ("__nv_bfloat16", "bf16")):
    for n in ns:
        out.append(f"template <> struct WgmmaTokensSS<{n}, {ty}> {{\n"
                   + body(n, "F", "float", f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{name}.{name}",
                          ", 1, 1, 0, 0") + "\n};")
out += ["#undef TOKENS_R8", "#undef TOKENS_F8", "#undef TOKENS_ARGS", ""]
open("cuda/wgmma_tokens.cuh", "w").write("\n".join(out))
