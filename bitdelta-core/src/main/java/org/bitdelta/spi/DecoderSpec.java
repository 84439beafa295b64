package org.bitdelta.spi;

import org.bitdelta.tensor.Tensor;

import java.util.List;
import java.util.Objects;

/**
 * What a backend needs to open a {@link DecoderDevice}: the model's shape, its base weights, the rotary tables,
 * and the sizes of the buffers the device allocates once (rows per step, KV cache blocks, tenant slots).
 *
 * @param hiddenSize        width of the residual stream
 * @param intermediateSize  width of the feed-forward hidden layer
 * @param headCount         query heads
 * @param keyValueHeadCount key/value heads (grouped-query attention: headCount is a multiple of it)
 * @param headDimension     per-head width (even)
 * @param vocabularySize    rows of the embedding and lm_head
 * @param normEpsilon       RMSNorm epsilon
 * @param slidingWindow     Mistral's window (a query at position p sees keys p − window + 1 .. p); 0: none
 * @param rotaryCos         cos(position · inverse frequency), F32 [contextLength, headDimension / 2], row-major
 * @param rotarySin         sin of the same angles
 * @param embedding         [vocab, hidden]
 * @param lmHead            [vocab, hidden]; the embedding itself when the model ties them
 * @param finalNorm         [hidden]
 * @param layers            per layer: its norms and projection weights
 * @param maxRows           the most rows (tokens) one step may run
 * @param kvBlockSize       tokens per KV cache block
 * @param kvBlocks          blocks in the KV cache (every layer has this many, for keys and for values)
 * @param tenantSlots       tenant slots 1 .. tenantSlots − 1 hold loaded tenants; slot 0 is the base model
 */
public record DecoderSpec(int hiddenSize, int intermediateSize, int headCount, int keyValueHeadCount, int headDimension,
                          int vocabularySize, int contextLength, float normEpsilon, int slidingWindow,
                          float[] rotaryCos, float[] rotarySin, Tensor embedding, Tensor lmHead, Tensor finalNorm,
                          List<LayerWeights> layers, int maxRows, int kvBlockSize, int kvBlocks, int tenantSlots) {

    /** One layer's weights: norms [hidden] and projections [out, in] (F32, F16 or BF16). */
    public record LayerWeights(Tensor inputNorm, Tensor postAttentionNorm, Tensor query, Tensor key, Tensor value,
                               Tensor output, Tensor gate, Tensor up, Tensor down) {
        public Tensor weight(Projection projection) {
            return switch (projection) {
                case QUERY -> query;
                case KEY -> key;
                case VALUE -> value;
                case OUTPUT -> output;
                case GATE -> gate;
                case UP -> up;
                case DOWN -> down;
            };
        }
    }

    public DecoderSpec {
        Objects.requireNonNull(embedding, "embedding");
        Objects.requireNonNull(lmHead, "lmHead");
        Objects.requireNonNull(finalNorm, "finalNorm");
        layers = List.copyOf(layers);
        if (headCount % keyValueHeadCount != 0 || headDimension % 2 != 0) {
            throw new IllegalArgumentException("heads " + headCount + " / kv heads " + keyValueHeadCount + " / head dimension " + headDimension);
        }
        if (rotaryCos.length != contextLength * headDimension / 2 || rotarySin.length != rotaryCos.length) {
            throw new IllegalArgumentException("rotary tables must be [contextLength, headDimension / 2]");
        }
        if (maxRows < 1 || kvBlockSize < 1 || kvBlocks < 1 || tenantSlots < 1) {
            throw new IllegalArgumentException("maxRows, kvBlockSize, kvBlocks and tenantSlots must be positive");
        }
    }

    public int layerCount() {
        return layers.size();
    }

    public int queryWidth() {
        return headCount * headDimension;
    }

    public int keyValueWidth() {
        return keyValueHeadCount * headDimension;
    }

    /** Columns of the output of a projection group. */
    public int width(Projection.Group group) {
        return switch (group) {
            case QKV -> queryWidth() + 2 * keyValueWidth();
            case ATTENTION_OUTPUT, FEED_FORWARD_OUTPUT -> hiddenSize;
            case GATE_UP -> 2 * intermediateSize;
        };
    }

    /** Bytes of one block of keys or values across every layer. */
    public long kvBlockBytes(int bytesPerValue) {
        return (long) layers.size() * kvBlockSize * keyValueWidth() * bytesPerValue;
    }
}
