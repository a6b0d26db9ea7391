"""Writes cuda/wgmma_tokens.cuh, the wgmma instructions with both operands in shared memory that
int8_wgmma_tokens.cu uses for its weight-row counts and int8_wgmma.cu for its token tiles:
WgmmaTokensS8<N> (s8 x s8 -> s32, k 32) and WgmmaTokensSS<N, T> (fp16 / bf16 -> fp32, k 16). Run
from the repository root:

    python scripts/gen_wgmma_tokens.py 32 64 96 128 224 256
"""

import sys

HEADER = [
    "// wgmma with both operands in shared memory: d (64 x N) += A (64 x k) * B (k x N), both",
    "// K-major with the 128-byte swizzle (hopper.cuh's descriptor); s8 x s8 -> s32 (k 32) and",
    "// fp16 / bf16 -> fp32 (k 16). For int8_wgmma_tokens.cu (64 tokens by N weight rows, N its",
    "// weight-row counts) and int8_wgmma.cu (64 weight rows by N tokens, its token tiles).",
    "// Included inside each file's anonymous namespace. Written by",
    "// scripts/gen_wgmma_tokens.py {counts}.",
    "template <int N> struct WgmmaTokensS8;",
    "template <int N, typename T> struct WgmmaTokensSS;",
    '#define TOKENS_R8(i) "+r"(d[i + 0]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]), \\',
    '                     "+r"(d[i + 4]), "+r"(d[i + 5]), "+r"(d[i + 6]), "+r"(d[i + 7])',
    '#define TOKENS_F8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \\',
    '                     "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])',
    '#define TOKENS_ARGS "l"(a), "l"(b), "r"(1)',
]


def run_method(n: int, kind: str, ctype: str, instruction: str, tail: str) -> str:
    """`run(d, a, b)`: one wgmma of N = n weight rows on descriptors a and b (d: n / 2 values)."""
    regs = n // 2
    parts = [",".join(f"%{i}" for i in range(j, min(j + 16, regs))) for j in range(0, regs, 16)]
    operands = '"\n                 "'.join(
        part + ("," if index < len(parts) - 1 else "") for index, part in enumerate(parts)
    )
    outputs = ", ".join(f"TOKENS_{kind}8({i})" for i in range(0, regs, 8))
    return f"""  static __device__ __forceinline__ void run({ctype} (&d)[{regs}], \
unsigned long long a, unsigned long long b) {{
    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{regs + 2}, 0;\\n"
                 "{instruction} {{"
                 "{operands}"
                 "}}, %{regs}, %{regs + 1}, p{tail};\\n}}\\n"
                 : {outputs}
                 : TOKENS_ARGS);
  }}"""


FP_TAIL = ", 1, 1, 0, 0"  # fp16 / bf16: scale-a, scale-b, no transposes
# The specializations, in order: (struct arguments, accumulator kind and type, instruction, the
# instruction's operands after the predicate), each with {n} for the weight rows.
SPECIALIZATIONS = [("WgmmaTokensS8<{n}>", "R", "int", "m64n{n}k32.s32.s8.s8", "")] + [
    (f"WgmmaTokensSS<{{n}}, {ctype}>", "F", "float", f"m64n{{n}}k16.f32.{name}.{name}", FP_TAIL)
    for ctype, name in (("__half", "f16"), ("__nv_bfloat16", "bf16"))
]


def source(counts: list[int]) -> str:
    out = [line.format(counts=" ".join(map(str, counts))) for line in HEADER]
    for struct, kind, ctype, shape, tail in SPECIALIZATIONS:
        for n in counts:
            instruction = "wgmma.mma_async.sync.aligned." + shape.format(n=n)
            method = run_method(n, kind, ctype, instruction, tail)
            out.append(f"template <> struct {struct.format(n=n)} {{\n{method}\n}};")
    out += ["#undef TOKENS_R8", "#undef TOKENS_F8", "#undef TOKENS_ARGS", ""]
    return "\n".join(out)


if __name__ == "__main__":
    counts = [int(a) for a in sys.argv[1:]]
    if not counts or any(n % 16 or not 16 <= n <= 256 for n in counts):
        sys.exit("usage: gen_wgmma_tokens.py N [N ...] (multiples of 16 up to 256)")
    with open("cuda/wgmma_tokens.cuh", "w") as f:
        f.write(source(counts))
