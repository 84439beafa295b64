// bd_runtime.cu -- device, memory and stream wrappers (bitdelta_cuda_runtime.h) over the static cudart, so that a
// caller without a CUDA runtime (Java through FFM) can manage buffers with the same status codes as the kernels.
#include <cstring>

#include "bitdelta_cuda.h"
#include "bitdelta_cuda_runtime.h"
#include "bd_common.cuh"

namespace bd {
cudaError_t device_info(DeviceInfo* out) {
  constexpr int MAX_DEVICES = 64;
  static DeviceInfo cache[MAX_DEVICES];  // benign race: every writer stores the same values
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev >= 0 && dev < MAX_DEVICES && cache[dev].sms > 0) { *out = cache[dev]; return cudaSuccess; }
  DeviceInfo info;
  e = cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&info.minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e != cudaSuccess) return e;
  if (dev >= 0 && dev < MAX_DEVICES) cache[dev] = info;
  *out = info;
  return cudaSuccess;
}
}  // namespace bd

namespace {
// Every wrapper funnels its cudaError_t through here, so that bd_last_cuda_error() names the failure.
// A failed call (an allocation too large) also sets cudart's per-thread "last error"; it is read and cleared here,
// so that the next kernel's cudaGetLastError() after its launch does not report this old failure as its own.
inline int check(cudaError_t error) {
  if (error == cudaSuccess) return BD_OK;
  cudaGetLastError();
  return bd::record_cuda_error(error);
}
}  // namespace

extern "C" {

int bd_device_count(int* count) {
  if (count == nullptr) return BD_ERR_NULL_POINTER;
  *count = 0;
  return check(cudaGetDeviceCount(count));
}

int bd_set_device(int device) { return check(cudaSetDevice(device)); }

int bd_device_name(int device, char* name, size_t capacity) {
  if (name == nullptr) return BD_ERR_NULL_POINTER;
  if (capacity == 0) return BD_ERR_BAD_SHAPE;
  cudaDeviceProp properties;
  int status = check(cudaGetDeviceProperties(&properties, device));
  if (status != BD_OK) return status;
  std::strncpy(name, properties.name, capacity - 1);
  name[capacity - 1] = '\0';
  return BD_OK;
}

int bd_mem_get_info(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemGetInfo(free_bytes, total_bytes));
}

int bd_malloc(void** d_pointer, size_t bytes) {
  if (d_pointer == nullptr) return BD_ERR_NULL_POINTER;
  *d_pointer = nullptr;
  if (bytes == 0) return BD_OK;
  int status = check(cudaMalloc(d_pointer, bytes));
  if (status != BD_OK) *d_pointer = nullptr;
  return status;
}

int bd_free(void* d_pointer) { return d_pointer == nullptr ? BD_OK : check(cudaFree(d_pointer)); }

int bd_host_alloc(void** h_pointer, size_t bytes) {
  if (h_pointer == nullptr) return BD_ERR_NULL_POINTER;
  *h_pointer = nullptr;
  if (bytes == 0) return BD_OK;
  int status = check(cudaHostAlloc(h_pointer, bytes, cudaHostAllocDefault));
  if (status != BD_OK) *h_pointer = nullptr;
  return status;
}

int bd_host_free(void* h_pointer) { return h_pointer == nullptr ? BD_OK : check(cudaFreeHost(h_pointer)); }

int bd_memcpy_htod(void* d_destination, const void* h_source, size_t bytes) {
  if (bytes == 0) return BD_OK;
  if (d_destination == nullptr || h_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpy(d_destination, h_source, bytes, cudaMemcpyHostToDevice));
}

int bd_memcpy_dtoh(void* h_destination, const void* d_source, size_t bytes) {
  if (bytes == 0) return BD_OK;
  if (h_destination == nullptr || d_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpy(h_destination, d_source, bytes, cudaMemcpyDeviceToHost));
}

int bd_memcpy_dtod(void* d_destination, const void* d_source, size_t bytes) {
  if (bytes == 0) return BD_OK;
  if (d_destination == nullptr || d_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpy(d_destination, d_source, bytes, cudaMemcpyDeviceToDevice));
}

int bd_memcpy_htod_async(void* d_destination, const void* h_source, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return BD_OK;
  if (d_destination == nullptr || h_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpyAsync(d_destination, h_source, bytes, cudaMemcpyHostToDevice, stream));
}

int bd_memcpy_dtoh_async(void* h_destination, const void* d_source, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return BD_OK;
  if (h_destination == nullptr || d_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpyAsync(h_destination, d_source, bytes, cudaMemcpyDeviceToHost, stream));
}

int bd_memcpy_dtod_async(void* d_destination, const void* d_source, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return BD_OK;
  if (d_destination == nullptr || d_source == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemcpyAsync(d_destination, d_source, bytes, cudaMemcpyDeviceToDevice, stream));
}

int bd_memset(void* d_destination, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return BD_OK;
  if (d_destination == nullptr) return BD_ERR_NULL_POINTER;
  return check(cudaMemsetAsync(d_destination, value, bytes, stream));
}

int bd_stream_create(cudaStream_t* stream) {
  if (stream == nullptr) return BD_ERR_NULL_POINTER;
  *stream = nullptr;
  return check(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking));
}

int bd_stream_destroy(cudaStream_t stream) { return stream == nullptr ? BD_OK : check(cudaStreamDestroy(stream)); }

int bd_stream_synchronize(cudaStream_t stream) { return check(cudaStreamSynchronize(stream)); }

}  // extern "C"
