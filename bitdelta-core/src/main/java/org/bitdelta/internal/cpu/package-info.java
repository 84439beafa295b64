/**
 * Internal: the CPU backends, vectorized (Vector API, {@code cpu}) and the scalar oracle ({@code cpu-scalar}), with
 * their product kernels and the heap-resident decoder device. Exported to bitdelta-cuda only; not public API.
 */
package org.bitdelta.internal.cpu;
