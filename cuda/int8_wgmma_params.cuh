// The kernel parameters int8_wgmma.cu and int8_wgmma_tokens.cu share (int8_wgmma.cu's header
// describes them): as a parameter list, as the arguments that pass them on, and as the signature
// their explicit instantiations name (T: the activations' type). The kernels take
// `weight_only_above` themselves (hopper.cuh's hand-over) and pass the rest on.
#pragma once

#define INT8_WGMMA_PARAMS                                                                          \
  const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap w_map,                \
      const __grid_constant__ TensorMap xo_map, const float *__restrict__ absmax, const float *__restrict__ SCB, const void *__restrict__ bias, \
      int bias_kind, const T *__restrict__ Xc, int ldc, const signed char *__restrict__ W, int ldw,     \
      const int *__restrict__ columns, const int *__restrict__ outlier_count, int M, int N, int K,       \
      T *__restrict__ out, int ldo, unsigned int *__restrict__ spent_mask, int spent_words,          \
      int early_weights, const unsigned int *__restrict__ hot_tiles, int weight_only_above
#define INT8_WGMMA_ARGS                                                                           \
  x_map, w_map, xo_map, absmax, SCB, bias, bias_kind, Xc, ldc, W, ldw, columns, outlier_count, M, N, K, out, ldo, \
      spent_mask, spent_words, early_weights, hot_tiles

#define SIGNATURE(T)                                                                              \
  (const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, \
   const float*, const float*,                                                                    \
   const void*, int, const T*, int, const signed char*, int, const int*, const int*, int, int, int, T*, int, \
   unsigned int*, int, int, const unsigned int*, int)
