// bd_prefill.cu -- bd_prefill's C entry points: the argument checks and the dispatch to the translation unit of the
// weight dtype (bd_prefill_f16.cu, bd_prefill_bf16.cu; the kernels are in bd_prefill.cuh).
#include "bd_prefill.cuh"

extern "C" {

size_t bd_prefill_workspace_bytes(int64_t, int64_t, int64_t, int64_t) { return 0; }

int bd_prefill(int dtype, int y_dtype, const void* d_W, const void* d_x, int64_t R, const int32_t* d_seg_offsets,
               const int32_t* d_seg_tenant, int64_t num_segments, const uint32_t* const* d_tenant_signs,
               const float* const* d_tenant_scales, int64_t num_tenants, int scale_per_row, int accumulate,
               void* d_y, int64_t M, int64_t K, void* d_workspace, size_t workspace_bytes, cudaStream_t stream) {
  (void)d_workspace;
  (void)workspace_bytes;
  if (!d_x || !d_seg_offsets || !d_seg_tenant || !d_y) return BD_ERR_NULL_POINTER;
  if (num_tenants > 0 && (!d_tenant_signs || !d_tenant_scales)) return BD_ERR_NULL_POINTER;
  if (M <= 0 || K <= 0 || R <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31) || R >= (int64_t(1) << 31) ||
      num_segments <= 0 || num_segments > 65535 || num_tenants < 0 || num_tenants > 0x7fffffff)
    return BD_ERR_BAD_SHAPE;
  if (scale_per_row != BD_SCALE_PER_MATRIX && scale_per_row != BD_SCALE_PER_ROW) return BD_ERR_BAD_SHAPE;
  const bd::PrefillArgs args{{y_dtype, d_W, d_x, R, d_tenant_signs, d_tenant_scales, int(num_tenants), scale_per_row,
                              d_y, M, K, stream},
                             d_seg_offsets, d_seg_tenant, int(num_segments), accumulate ? 1 : 0};
  if (dtype == BD_DTYPE_F16) return bd::prefill_f16(args);
  if (dtype == BD_DTYPE_BF16) return bd::prefill_bf16(args);
  return BD_ERR_BAD_DTYPE;
}

}  // extern "C"
