/**
 * Public API: tensors as typed views of native memory ({@link org.bitdelta.tensor.Tensor}, often slices of a
 * memory-mapped file) and their element types ({@link org.bitdelta.tensor.DType}).
 */
package org.bitdelta.tensor;
