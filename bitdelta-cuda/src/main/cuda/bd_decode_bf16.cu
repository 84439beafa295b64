// bd_decode_bf16.cu -- the decode kernels for BF16 weights and activations (bd_decode.cuh), in a translation unit
// of their own so that the two dtypes compile in parallel.
#include "bd_decode.cuh"

int bd::decode_bf16(const DecodeArgs& a) { return decode_dtype<__nv_bfloat16>(a); }
