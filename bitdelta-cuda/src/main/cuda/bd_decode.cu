// bd_decode.cu -- bd_decode's C entry points: the argument checks, the benchmark settings, and the dispatch to the
// translation unit of the weight dtype (bd_decode_f16.cu, bd_decode_bf16.cu; the kernels are in bd_decode.cuh).
#include "bd_decode.cuh"

namespace bd {
int g_decode_variant = BD_DECODE_AUTO;
int g_decode_persistent = 1;
}  // namespace bd

extern "C" {

size_t bd_decode_workspace_bytes(int64_t M, int64_t K, int64_t R) {
  (void)M;
  if (K <= 0 || R <= 0) return 0;
  return bd::decode3_workspace(K, R);
}

int bd_debug_set_decode_variant(int variant) {
  switch (variant) {
    case BD_DECODE_AUTO:
    case BD_DECODE_SPLIT_K:
    case BD_DECODE_PIPELINED:
    case BD_DECODE_BINARY:
    case BD_DECODE_BINARY_LEAN:
      break;
    case BD_DECODE_PIPELINED_M32:
    case BD_DECODE_BINARY_M32:
      if (!BD_EXPERIMENTS) return BD_ERR_NOT_BUILT;
      break;
    default:
      return BD_ERR_BAD_SHAPE;
  }
  bd::g_decode_variant = variant;
  return BD_OK;
}

int bd_debug_set_decode_persistent(int persistent) {
  if (persistent != 0 && persistent != 1) return BD_ERR_BAD_SHAPE;
  bd::g_decode_persistent = persistent;
  return BD_OK;
}

int bd_decode(int dtype, int y_dtype, const void* d_W, const void* d_x, const int32_t* d_row_tenant, int64_t R,
              const uint32_t* const* d_tenant_signs, const float* const* d_tenant_scales, int64_t num_tenants,
              int scale_per_row, void* d_y, int64_t M, int64_t K, void* d_workspace, size_t workspace_bytes,
              cudaStream_t stream) {
  if (!d_W || !d_x || !d_row_tenant || !d_y) return BD_ERR_NULL_POINTER;
  if (num_tenants > 0 && (!d_tenant_signs || !d_tenant_scales)) return BD_ERR_NULL_POINTER;
  if (M <= 0 || K <= 0 || R <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31) || R > 65535 ||
      num_tenants < 0 || num_tenants > 0x7fffffff)
    return BD_ERR_BAD_SHAPE;
  if (scale_per_row != BD_SCALE_PER_MATRIX && scale_per_row != BD_SCALE_PER_ROW) return BD_ERR_BAD_SHAPE;
  const bd::DecodeArgs args{{y_dtype, d_W, d_x, R, d_tenant_signs, d_tenant_scales, int(num_tenants), scale_per_row, d_y,
                             M, K, stream},
                            d_row_tenant, d_workspace, workspace_bytes};
  if (dtype == BD_DTYPE_F16) return bd::decode_f16(args);
  if (dtype == BD_DTYPE_BF16) return bd::decode_bf16(args);
  return BD_ERR_BAD_DTYPE;
}

}  // extern "C"
