// wgmma with both operands in shared memory: d (64 x N) += A (64 x k) * B (k x N), both
// K-major with the 128-byte swizzle (hopper.cuh's descriptor); s8 x s8 -> s32 (k 32) and
// fp16 / bf16 -> fp32 (k 16). For int8_wgmma_tokens.cu (64 tokens by N weight rows, N its
// weight-row counts) and int8_wgmma.cu (64 weight rows by N tokens, its token tiles).
// Included inside each file's anonymous namespace. Written by
// scripts/gen_wgmma_tokens.py 32 64 96 128 224 256.
template <int N> struct WgmmaTokensS8;
template <int N, typename T> struct WgmmaTokensSS;
#define TOKENS_R8(i) "+r"(d[i + 0]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]), \
                     "+r"(d[i + 4]), "+r"(d[i + 5]), "+r"(d[i + 6]), "+r"(d[i + 7])
#define TOKENS_F8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
                     "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define TOKENS_ARGS "l"(a), "l"(b), "r"(1)
template <> struct WgmmaTokensS8<32> {
  static __device__ __forceinline__ void run(int (&d)[16], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
                 "}, %16, %17, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensS8<64> {
  static __device__ __forceinline__ void run(int (&d)[32], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
                 "}, %32, %33, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8), TOKENS_R8(16), TOKENS_R8(24)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensS8<96> {
  static __device__ __forceinline__ void run(int (&d)[48], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
                 "}, %48, %49, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8), TOKENS_R8(16), TOKENS_R8(24), TOKENS_R8(32), TOKENS_R8(40)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensS8<128> {
  static __device__ __forceinline__ void run(int (&d)[64], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
                 "}, %64, %65, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8), TOKENS_R8(16), TOKENS_R8(24), TOKENS_R8(32), TOKENS_R8(40), TOKENS_R8(48), TOKENS_R8(56)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensS8<224> {
  static __device__ __forceinline__ void run(int (&d)[112], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %114, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n224k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111"
                 "}, %112, %113, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8), TOKENS_R8(16), TOKENS_R8(24), TOKENS_R8(32), TOKENS_R8(40), TOKENS_R8(48), TOKENS_R8(56), TOKENS_R8(64), TOKENS_R8(72), TOKENS_R8(80), TOKENS_R8(88), TOKENS_R8(96), TOKENS_R8(104)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensS8<256> {
  static __device__ __forceinline__ void run(int (&d)[128], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
                 "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
                 "}, %128, %129, p;\n}\n"
                 : TOKENS_R8(0), TOKENS_R8(8), TOKENS_R8(16), TOKENS_R8(24), TOKENS_R8(32), TOKENS_R8(40), TOKENS_R8(48), TOKENS_R8(56), TOKENS_R8(64), TOKENS_R8(72), TOKENS_R8(80), TOKENS_R8(88), TOKENS_R8(96), TOKENS_R8(104), TOKENS_R8(112), TOKENS_R8(120)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<32, __half> {
  static __device__ __forceinline__ void run(float (&d)[16], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
                 "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<64, __half> {
  static __device__ __forceinline__ void run(float (&d)[32], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<96, __half> {
  static __device__ __forceinline__ void run(float (&d)[48], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
                 "}, %48, %49, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<128, __half> {
  static __device__ __forceinline__ void run(float (&d)[64], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<224, __half> {
  static __device__ __forceinline__ void run(float (&d)[112], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %114, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n224k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111"
                 "}, %112, %113, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56), TOKENS_F8(64), TOKENS_F8(72), TOKENS_F8(80), TOKENS_F8(88), TOKENS_F8(96), TOKENS_F8(104)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<256, __half> {
  static __device__ __forceinline__ void run(float (&d)[128], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
                 "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
                 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56), TOKENS_F8(64), TOKENS_F8(72), TOKENS_F8(80), TOKENS_F8(88), TOKENS_F8(96), TOKENS_F8(104), TOKENS_F8(112), TOKENS_F8(120)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<32, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[16], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
                 "}, %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<64, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[32], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<96, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[48], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
                 "}, %48, %49, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<128, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[64], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<224, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[112], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %114, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n224k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111"
                 "}, %112, %113, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56), TOKENS_F8(64), TOKENS_F8(72), TOKENS_F8(80), TOKENS_F8(88), TOKENS_F8(96), TOKENS_F8(104)
                 : TOKENS_ARGS);
  }
};
template <> struct WgmmaTokensSS<256, __nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[128], unsigned long long a, unsigned long long b) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
                 "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
                 "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
                 "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
                 "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
                 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : TOKENS_F8(0), TOKENS_F8(8), TOKENS_F8(16), TOKENS_F8(24), TOKENS_F8(32), TOKENS_F8(40), TOKENS_F8(48), TOKENS_F8(56), TOKENS_F8(64), TOKENS_F8(72), TOKENS_F8(80), TOKENS_F8(88), TOKENS_F8(96), TOKENS_F8(104), TOKENS_F8(112), TOKENS_F8(120)
                 : TOKENS_ARGS);
  }
};
#undef TOKENS_R8
#undef TOKENS_F8
#undef TOKENS_ARGS
