/*
 * bitdelta_cuda_runtime.h -- memory, stream and device wrappers of libbitdelta_cuda.so, for callers that have no
 * CUDA runtime of their own (the Java side, through java.lang.foreign). Thin extern "C" wrappers over the
 * statically linked cudart, so the library needs only the driver (libcuda.so.1) at run time.
 *
 * Conventions: every function returns a status of bitdelta_cuda.h (BD_OK, or BD_ERR_NULL_POINTER for a missing
 * output pointer, BD_ERR_BAD_SHAPE for a negative size, BD_ERR_CUDA with the CUDA error string available from
 * bd_last_cuda_error() on the calling thread). Streams are passed as opaque handles (cudaStream_t, a pointer;
 * NULL = the legacy default stream). Pointers named d_* are device pointers, h_* host pointers.
 */
#ifndef BITDELTA_CUDA_RUNTIME_H
#define BITDELTA_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* count: output, number of CUDA devices visible (0 when the driver reports none; the status is then BD_ERR_CUDA
 * with the driver's reason, e.g. "no CUDA-capable device is detected"). */
int bd_device_count(int* count);

/* device: 0 .. count-1; makes it current on the calling thread (cudaSetDevice). */
int bd_set_device(int device);

/* device:   0 .. count-1
 * name:     output buffer of capacity bytes; receives the NUL-terminated device name (truncated to fit)
 * capacity: > 0 */
int bd_device_name(int device, char* name, size_t capacity);

/* free_bytes, total_bytes: outputs, memory of the current device (cudaMemGetInfo). */
int bd_mem_get_info(size_t* free_bytes, size_t* total_bytes);

/* d_pointer: output, a device allocation of bytes bytes (cudaMalloc: 256-byte aligned); *d_pointer is NULL on
 * failure. bytes: >= 0 (0 gives NULL and BD_OK). */
int bd_malloc(void** d_pointer, size_t bytes);

/* d_pointer: an allocation of bd_malloc, or NULL (no-op). Synchronizes the device as cudaFree does. */
int bd_free(void* d_pointer);

/* h_pointer: output, page-locked ("pinned") host memory of bytes bytes (cudaHostAlloc, default flags): copies
 * from and to it run at full PCIe speed and truly asynchronously. bytes: >= 0 (0 gives NULL and BD_OK). */
int bd_host_alloc(void** h_pointer, size_t bytes);

/* h_pointer: from bd_host_alloc, or NULL (no-op). */
int bd_host_free(void* h_pointer);

/* Synchronous copies of bytes bytes (return once the copy is done). h_* is pageable or pinned host memory. */
int bd_memcpy_htod(void* d_destination, const void* h_source, size_t bytes);
int bd_memcpy_dtoh(void* h_destination, const void* d_source, size_t bytes);
int bd_memcpy_dtod(void* d_destination, const void* d_source, size_t bytes);

/* Asynchronous copies enqueued on stream; with pageable host memory cudaMemcpyAsync stages the copy (the host
 * buffer may be reused when the call returns for htod; for dtoh the data is there after bd_stream_synchronize). */
int bd_memcpy_htod_async(void* d_destination, const void* h_source, size_t bytes, cudaStream_t stream);
int bd_memcpy_dtoh_async(void* h_destination, const void* d_source, size_t bytes, cudaStream_t stream);
int bd_memcpy_dtod_async(void* d_destination, const void* d_source, size_t bytes, cudaStream_t stream);

/* d_destination: bytes bytes set to value & 0xFF, enqueued on stream (cudaMemsetAsync). */
int bd_memset(void* d_destination, int value, size_t bytes, cudaStream_t stream);

/* stream: output, a new non-blocking stream (cudaStreamNonBlocking: no implicit sync with the legacy stream). */
int bd_stream_create(cudaStream_t* stream);
/* stream: from bd_stream_create; NULL is a no-op. */
int bd_stream_destroy(cudaStream_t stream);
/* Waits for all work on stream; asynchronous faults of earlier launches surface here as BD_ERR_CUDA. */
int bd_stream_synchronize(cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* BITDELTA_CUDA_RUNTIME_H */
