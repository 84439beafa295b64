// bd_prefill_bf16.cu -- the prefill kernels for BF16 weights and activations (bd_prefill.cuh), in a translation unit
// of their own so that the two dtypes compile in parallel.
#include "bd_prefill.cuh"

int bd::prefill_bf16(const PrefillArgs& a) { return prefill_dtype<__nv_bfloat16>(a); }
