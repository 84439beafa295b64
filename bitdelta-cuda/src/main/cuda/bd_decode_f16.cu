// bd_decode_f16.cu -- the decode kernels for F16 weights and activations (bd_decode.cuh), in a translation unit
// of their own so that the two dtypes compile in parallel.
#include "bd_decode.cuh"

int bd::decode_f16(const DecodeArgs& a) { return decode_dtype<__half>(a); }
