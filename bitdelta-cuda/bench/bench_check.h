// bench_check.h -- the fail-fast checks of the host programs in bench/ (harness.cu, step_check.cu,
// cublas_prefill.cu): a failed CUDA runtime, cuBLAS or libbitdelta_cuda call prints where it was, the call and the
// error ("FATAL file:line call: ... error ...", on stderr after flushing stdout) and exits with status 2. The
// programs' own failed checks exit with status 1.
//
// CUDA_CHECK(call) and CUBLAS_CHECK(call) need nothing else. BD_CHECK(call) (a BD_* status) is defined where
// bitdelta_cuda.h was included before this header; where bitdelta_step.h was too, the message also carries
// bd_step_last_error().
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace bench {

[[noreturn]] inline void fatal(const char* file, int line, const char* call, const char* error) {
  std::fflush(stdout);
  std::fprintf(stderr, "FATAL %s:%d %s: %s\n", file, line, call, error);
  std::exit(2);
}

inline void check_cuda(cudaError_t e, const char* file, int line, const char* call) {
  if (e == cudaSuccess) return;
  char error[512];
  std::snprintf(error, sizeof(error), "CUDA error %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
  fatal(file, line, call, error);
}

inline void check_cublas(int status, const char* file, int line, const char* call) {
  if (status == 0) return;  // CUBLAS_STATUS_SUCCESS
  char error[64];
  std::snprintf(error, sizeof(error), "cuBLAS error, status %d", status);
  fatal(file, line, call, error);
}

#ifdef BITDELTA_CUDA_H
inline void check_bd(int status, const char* file, int line, const char* call) {
  if (status == BD_OK) return;
#ifdef BITDELTA_STEP_H
  const char* step_error = bd_step_last_error();
#else
  const char* step_error = "";
#endif
  char error[1024];
  std::snprintf(error, sizeof(error), "bitdelta error %d (%s)%s%s; last CUDA error: %s", status, bd_status_string(status),
                *step_error ? ": " : "", step_error, bd_last_cuda_error());
  fatal(file, line, call, error);
}
#endif

}  // namespace bench

#define CUDA_CHECK(call) bench::check_cuda((call), __FILE__, __LINE__, #call)
#define CUBLAS_CHECK(call) bench::check_cublas(int(call), __FILE__, __LINE__, #call)
#ifdef BITDELTA_CUDA_H
#define BD_CHECK(call) bench::check_bd((call), __FILE__, __LINE__, #call)
#endif
