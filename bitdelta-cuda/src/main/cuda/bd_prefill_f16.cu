// bd_prefill_f16.cu -- the prefill kernels for F16 weights and activations (bd_prefill.cuh), in a translation unit
// of their own so that the two dtypes compile in parallel.
#include "bd_prefill.cuh"

int bd::prefill_f16(const PrefillArgs& a) { return prefill_dtype<__half>(a); }
