package org.bitdelta.spi;

import org.bitdelta.BinaryDelta;
import org.bitdelta.tensor.Tensor;

import java.util.Objects;

/**
 * What one tenant (a fine-tune served on the shared base) changes: the 1-bit delta of each projection it has one
 * for, and its own embeddings, lm_head and norms where it replaces the base's. Null means "the base's".
 *
 * @param name           the tenant's name, for messages
 * @param deltas         [layer][projection ordinal]: the delta, or null
 * @param embedding      [vocab, hidden] or null
 * @param lmHead         [vocab, hidden] or null (with tied embeddings: the tenant's embedding, if it has one)
 * @param finalNorm      [hidden] or null
 * @param inputNorms     [layer] → [hidden] or null
 * @param postAttentionNorms [layer] → [hidden] or null
 */
public record TenantWeights(String name, BinaryDelta[][] deltas, Tensor embedding, Tensor lmHead, Tensor finalNorm,
                            Tensor[] inputNorms, Tensor[] postAttentionNorms) {
    public TenantWeights {
        Objects.requireNonNull(name, "name");
        if (deltas.length != inputNorms.length || deltas.length != postAttentionNorms.length) {
            throw new IllegalArgumentException(name + ": per-layer arrays of different lengths");
        }
    }

    public BinaryDelta delta(int layer, Projection projection) {
        return deltas[layer][projection.ordinal()];
    }

    /** Bytes this tenant's own data takes where it is held as given (packed signs, scales, whole tensors). */
    public long bytes() {
        long bytes = 0;
        for (BinaryDelta[] layer : deltas) {
            for (BinaryDelta delta : layer) {
                if (delta != null) {
                    bytes += delta.signs().byteSize() + 4L * (delta.perRowScales() ? delta.rows() : 1);
                }
            }
        }
        bytes += bytesOf(embedding) + (lmHead != embedding ? bytesOf(lmHead) : 0) + bytesOf(finalNorm);
        for (int layer = 0; layer < deltas.length; layer++) {
            bytes += bytesOf(inputNorms[layer]) + bytesOf(postAttentionNorms[layer]);
        }
        return bytes;
    }

    private static long bytesOf(Tensor tensor) {
        return tensor == null ? 0 : tensor.byteSize();
    }
}
