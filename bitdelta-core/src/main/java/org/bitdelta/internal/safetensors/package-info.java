/**
 * Internal: reading safetensors files and model folders memory-mapped, and writing safetensors files atomically
 * without passing tensors through the heap. Exported to bitdelta-cuda only; not public API.
 */
package org.bitdelta.internal.safetensors;
