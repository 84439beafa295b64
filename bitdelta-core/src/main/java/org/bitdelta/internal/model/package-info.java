/**
 * Internal: the decoder behind {@link org.bitdelta.inference.DecoderModel}: model config and loading, the tenant
 * table, the paged KV cache, sequences, sampling and the one decoder step every backend runs. Exported to
 * bitdelta-cuda only; not public API.
 */
package org.bitdelta.internal.model;
