// bd_step_runtime.cu -- the decoder step's runtime calls (bitdelta_step.h): ABI version, failure text, CUDA graph capture
// and replay, events.
#include "bd_step_common.cuh"

#include <cstdarg>
#include <cstring>

namespace bd {
namespace step {

static thread_local char last_error[1024] = "";

int fail(cudaError_t error, const char* format, ...) {
  char message[768];
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(message, sizeof(message), format, arguments);
  va_end(arguments);
  std::snprintf(last_error, sizeof(last_error), "%s: %s: %s", message, cudaGetErrorName(error), cudaGetErrorString(error));
  return record_cuda_error(error);
}

int refuse(int status, const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(last_error, sizeof(last_error), format, arguments);
  va_end(arguments);
  return status;
}

// BD_OK where a CUDA runtime call succeeded, else its failure (fail) naming `what`.
static int cuda_status(cudaError_t e, const char* what) { return e == cudaSuccess ? BD_OK : fail(e, "%s", what); }

// bd_step_event_create (timing false) and bd_step_timer_create (timing true): a new event in *event, NULL on failure.
static int create_event(void** event, bool timing, const char* function) {
  if (event == nullptr) return refuse(BD_ERR_NULL_POINTER, "%s: NULL output", function);
  *event = nullptr;
  cudaEvent_t created = nullptr;
  const cudaError_t e = timing ? cudaEventCreate(&created) : cudaEventCreateWithFlags(&created, cudaEventDisableTiming);
  if (e != cudaSuccess) return fail(e, timing ? "cudaEventCreate" : "cudaEventCreateWithFlags");
  *event = created;
  return BD_OK;
}

}  // namespace step
}  // namespace bd

using namespace bd::step;

extern "C" {

int bd_step_abi_version(void) { return BD_STEP_ABI_VERSION; }

const char* bd_step_last_error(void) { return last_error; }

int bd_step_graph_begin(cudaStream_t stream) {
  if (stream == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_graph_begin: the legacy default stream cannot be captured");
  // Thread-local mode: only this thread's unsafe calls (cudaMalloc, synchronous copies) are refused while capturing.
  return cuda_status(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
}

int bd_step_graph_end(cudaStream_t stream, void** graph_exec) {
  if (stream == nullptr || graph_exec == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_graph_end: NULL stream or output");
  *graph_exec = nullptr;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream, &graph);
  if (e != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return fail(e, "cudaStreamEndCapture");
  }
  size_t nodes = 0;
  cudaGraphGetNodes(graph, nullptr, &nodes);
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) return fail(e, "cudaGraphInstantiate of a captured step (%zu nodes)", nodes);
  *graph_exec = exec;
  return BD_OK;
}

int bd_step_graph_abort(cudaStream_t stream) {
  if (stream == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_graph_abort: NULL stream");
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaError_t e = cudaStreamIsCapturing(stream, &status);
  if (e == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream, &graph);  // fails for an invalidated capture: what it recorded is discarded either way
    if (graph != nullptr) cudaGraphDestroy(graph);
    e = cudaStreamIsCapturing(stream, &status);
  }
  cudaGetLastError();  // the failed launch that made the caller abort is reported already; do not pin it on the next one
  if (e != cudaSuccess) return fail(e, "cudaStreamIsCapturing after aborting a capture");
  if (status != cudaStreamCaptureStatusNone) return refuse(BD_ERR_CUDA, "bd_step_graph_abort: the stream is still capturing");
  return BD_OK;
}

int bd_step_graph_launch(void* graph_exec, cudaStream_t stream) {
  if (graph_exec == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_graph_launch: NULL graph");
  return cuda_status(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph_exec), stream), "cudaGraphLaunch of a captured step");
}

int bd_step_graph_destroy(void* graph_exec) {
  if (graph_exec == nullptr) return BD_OK;
  return cuda_status(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec)), "cudaGraphExecDestroy");
}

int bd_step_event_create(void** event) { return create_event(event, false, "bd_step_event_create"); }

int bd_step_event_record(void* event, cudaStream_t stream) {
  if (event == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_event_record: NULL event");
  return cuda_status(cudaEventRecord(static_cast<cudaEvent_t>(event), stream), "cudaEventRecord");
}

int bd_step_event_synchronize(void* event) {
  if (event == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_event_synchronize: NULL event");
  return cuda_status(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "cudaEventSynchronize");
}

int bd_step_event_destroy(void* event) {
  if (event == nullptr) return BD_OK;
  return cuda_status(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy");
}

// ---- benchmarks ----

int bd_step_timer_create(void** event) { return create_event(event, true, "bd_step_timer_create"); }

int bd_step_timer_elapsed(void* start, void* end, float* milliseconds) {
  if (start == nullptr || end == nullptr || milliseconds == nullptr)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_timer_elapsed: NULL event or output");
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(end));
  if (e != cudaSuccess) return fail(e, "cudaEventSynchronize (bd_step_timer_elapsed)");
  return cuda_status(cudaEventElapsedTime(milliseconds, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)),
                     "cudaEventElapsedTime");
}

int bd_step_copy_bandwidth(int64_t bytes, int repetitions, double* bytes_per_second) {
  if (bytes_per_second == nullptr) return refuse(BD_ERR_NULL_POINTER, "bd_step_copy_bandwidth: NULL output");
  if (bytes <= 0 || repetitions <= 0 || repetitions > 1000)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_copy_bandwidth: %lld bytes, %d repetitions", (long long)bytes, repetitions);
  void *source = nullptr, *target = nullptr;
  cudaEvent_t start = nullptr, end = nullptr;
  cudaStream_t stream = nullptr;
  float* times = new float[repetitions];
  cudaError_t e = cudaMalloc(&source, size_t(bytes));
  if (e == cudaSuccess) e = cudaMalloc(&target, size_t(bytes));
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&end);
  if (e == cudaSuccess) e = cudaMemsetAsync(source, 0x5A, size_t(bytes), stream);
  if (e == cudaSuccess) e = cudaMemcpyAsync(target, source, size_t(bytes), cudaMemcpyDeviceToDevice, stream);  // warm-up
  for (int i = 0; i < repetitions && e == cudaSuccess; ++i) {
    e = cudaEventRecord(start, stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(target, source, size_t(bytes), cudaMemcpyDeviceToDevice, stream);
    if (e == cudaSuccess) e = cudaEventRecord(end, stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(end);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&times[i], start, end);
  }
  if (e == cudaSuccess) {
    for (int i = 1; i < repetitions; ++i)  // insertion sort: the median
      for (int j = i; j > 0 && times[j] < times[j - 1]; --j) {
        const float swap = times[j];
        times[j] = times[j - 1];
        times[j - 1] = swap;
      }
    *bytes_per_second = 2.0 * double(bytes) / (double(times[repetitions / 2]) * 1e-3);
  }
  delete[] times;
  if (start) cudaEventDestroy(start);
  if (end) cudaEventDestroy(end);
  if (stream) cudaStreamDestroy(stream);
  if (source) cudaFree(source);
  if (target) cudaFree(target);
  if (e != cudaSuccess) return fail(e, "bd_step_copy_bandwidth (%lld bytes)", (long long)bytes);
  return BD_OK;
}

}  // extern "C"
