package org.bitdelta.internal.model;

import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.Projection;
import org.bitdelta.tensor.Tensor;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Loading: a Hugging Face folder (config.json + safetensors, sharded or not, memory-mapped) turned into the
 * {@link DecoderSpec} a backend opens, every tensor's presence, dtype and shape checked against the config.
 */
public final class ModelLoader {
    public static final String EMBEDDING = "model.embed_tokens.weight";
    public static final String FINAL_NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    private ModelLoader() {
    }

    /** The folder's config, refusing what this decoder does not implement. */
    public static ModelConfig config(Path folder) {
        if (!Files.isDirectory(folder)) {
            throw new BitDeltaException(folder + ": no such model folder (a Hugging Face folder with config.json and safetensors weights)");
        }
        return ModelConfig.read(folder);
    }

    /** The spec of a decoder over {@code weights}, with the buffer sizes of {@code options}. */
    public static DecoderSpec spec(ModelConfig config, ModelWeights weights, DecoderOptions options) {
        int hidden = config.hiddenSize();
        Tensor embedding = require(config, weights, EMBEDDING, config.vocabularySize(), hidden);
        // A tied model's lm_head is its embedding matrix (HF then neither needs nor reads lm_head.weight).
        Tensor lmHead = config.tiedEmbeddings() ? embedding : require(config, weights, LM_HEAD, config.vocabularySize(), hidden);
        Tensor finalNorm = require(config, weights, FINAL_NORM, hidden);
        List<DecoderSpec.LayerWeights> layers = new ArrayList<>();
        for (int layer = 0; layer < config.layerCount(); layer++) {
            Tensor[] projections = new Tensor[Projection.values().length];
            for (Projection projection : Projection.values()) {
                long[] shape = projectionShape(config, projection);
                projections[projection.ordinal()] = require(config, weights, projection.weightName(layer), shape[0], shape[1]);
            }
            layers.add(new DecoderSpec.LayerWeights(
                    require(config, weights, "model.layers." + layer + ".input_layernorm.weight", hidden),
                    require(config, weights, "model.layers." + layer + ".post_attention_layernorm.weight", hidden),
                    projections[0], projections[1], projections[2], projections[3], projections[4], projections[5], projections[6]));
        }
        float[][] rotary = config.rotary().tables(config.contextLength(), config.headDimension());
        int kvBlocks = Math.max(1, (options.kvCacheTokens() + options.kvBlockSize() - 1) / options.kvBlockSize());
        return new DecoderSpec(hidden, config.intermediateSize(), config.headCount(), config.keyValueHeadCount(),
                config.headDimension(), config.vocabularySize(), config.contextLength(), config.normEpsilon(), config.slidingWindow(),
                rotary[0], rotary[1], embedding, lmHead, finalNorm, layers, options.maxRows(), options.kvBlockSize(), kvBlocks,
                options.tenantSlots());
    }

    /** [out, in] of a projection's weight. */
    public static long[] projectionShape(ModelConfig config, Projection projection) {
        long hidden = config.hiddenSize();
        long queryWidth = (long) config.headCount() * config.headDimension();
        long keyValueWidth = (long) config.keyValueHeadCount() * config.headDimension();
        long intermediate = config.intermediateSize();
        return switch (projection) {
            case QUERY -> new long[]{queryWidth, hidden};
            case KEY, VALUE -> new long[]{keyValueWidth, hidden};
            case OUTPUT -> new long[]{hidden, queryWidth};
            case GATE, UP -> new long[]{intermediate, hidden};
            case DOWN -> new long[]{hidden, intermediate};
        };
    }

    private static Tensor require(ModelConfig config, ModelWeights weights, String name, long... shape) {
        if (!weights.contains(name)) {
            throw new BitDeltaException(weights.location() + ": has no tensor '" + name + "', which a " + config.modelType()
                    + " model with the config " + config.configFile() + " needs");
        }
        Tensor tensor = weights.tensor(name);
        TenantTable.checkTensor(tensor, weights.fileOf(name).toString(), shape);
        return tensor;
    }
}
