package org.bitdelta.internal.model;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.safetensors.ModelWeights;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;

/**
 * The part of a Hugging Face {@code config.json} that decides the decoder's arithmetic, for Llama and Mistral.
 * Every field that would change the math in a way this decoder does not implement is refused with the file and
 * the field named, rather than ignored: a silently wrong model is worse than none.
 *
 * @param configFile        the config.json read
 * @param modelType         "llama" or "mistral"
 * @param headDimension     per-head width (config head_dim, else hidden_size / num_attention_heads)
 * @param contextLength     max_position_embeddings: the longest sequence accepted
 * @param rotary            rope_theta and rope scaling
 * @param slidingWindow     Mistral's attention window in tokens (a query sees itself and the window − 1 keys
 *                          before it); 0 when attention is fully causal
 * @param bosTokenId        −1 when the config names none
 * @param eosTokenIds       empty when the config names none
 */
public record ModelConfig(Path configFile, String modelType, int hiddenSize, int intermediateSize, int layerCount,
                          int headCount, int keyValueHeadCount, int headDimension, int vocabularySize,
                          int contextLength, float normEpsilon, RotaryEmbedding rotary, boolean tiedEmbeddings,
                          int slidingWindow, int bosTokenId, int[] eosTokenIds) {

    private static final Set<String> MODEL_TYPES = Set.of("llama", "mistral");
    private static final Map<String, String> ARCHITECTURE_OF_TYPE = Map.of(
            "llama", "LlamaForCausalLM", "mistral", "MistralForCausalLM");
    /** Fields of neighbouring architectures that change the math; present with a non-trivial value they are refused. */
    private static final List<String> UNSUPPORTED_FIELDS = List.of(
            "quantization_config", "attn_logit_softcapping", "final_logit_softcapping", "logit_scale",
            "embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling",
            "query_pre_attn_scalar", "use_qk_norm", "qk_layernorm", "num_local_experts", "num_experts",
            "no_rope_layers", "use_sliding_window", "max_window_layers");

    public ModelConfig {
        eosTokenIds = eosTokenIds.clone();
    }

    @Override
    public int[] eosTokenIds() {
        return eosTokenIds.clone();
    }

    public double ropeTheta() {
        return rotary.theta();
    }

    /** Reads and checks {@code folder/config.json}. */
    public static ModelConfig read(Path folder) {
        Path file = Files.isDirectory(folder) ? folder.resolve("config.json") : folder.resolveSibling("config.json");
        return parse(ModelWeights.readConfig(folder), file);
    }

    public static ModelConfig parse(JsonObject json, Path file) {
        Reader reader = new Reader(json, file);
        String modelType = reader.requiredString("model_type");
        if (!MODEL_TYPES.contains(modelType)) {
            throw reader.refuse("model_type", "'" + modelType + "' is not supported (supported: llama, mistral)");
        }
        if (json.has("architectures") && !json.get("architectures").isJsonNull()) {
            if (!json.get("architectures").isJsonArray()) {
                throw reader.refuse("architectures", "must be a list of class names");
            }
            for (JsonElement architecture : json.getAsJsonArray("architectures")) {
                String name = architecture.getAsString();
                if (!name.equals(ARCHITECTURE_OF_TYPE.get(modelType))) {
                    throw reader.refuse("architectures", "'" + name + "' is not supported for model_type '" + modelType
                            + "' (supported: " + ARCHITECTURE_OF_TYPE.get(modelType) + ")");
                }
            }
        }
        for (String field : UNSUPPORTED_FIELDS) {
            if (reader.isSet(field)) {
                throw reader.refuse(field, "is set (" + json.get(field) + "), which changes the model's arithmetic in a way this decoder does not implement");
            }
        }
        String activation = reader.optionalString("hidden_act", "silu");
        if (!activation.equals("silu") && !activation.equals("swish")) { // HF maps both names to SiLU
            throw reader.refuse("hidden_act", "'" + activation + "' is not supported (only silu: the SwiGLU feed-forward)");
        }
        if (reader.optionalBoolean("attention_bias", false)) {
            throw reader.refuse("attention_bias", "is true; projections with biases are not supported");
        }
        if (reader.optionalBoolean("mlp_bias", false)) {
            throw reader.refuse("mlp_bias", "is true; projections with biases are not supported");
        }

        int hiddenSize = reader.positiveInt("hidden_size");
        int intermediateSize = reader.positiveInt("intermediate_size");
        int layerCount = reader.positiveInt("num_hidden_layers");
        int headCount = reader.positiveInt("num_attention_heads");
        int keyValueHeadCount = reader.isSet("num_key_value_heads") ? reader.positiveInt("num_key_value_heads") : headCount;
        if (headCount % keyValueHeadCount != 0) {
            throw reader.refuse("num_key_value_heads", keyValueHeadCount + " does not divide num_attention_heads " + headCount);
        }
        int headDimension;
        if (reader.isSet("head_dim")) {
            headDimension = reader.positiveInt("head_dim");
        } else {
            if (hiddenSize % headCount != 0) {
                throw reader.refuse("hidden_size", hiddenSize + " is not a multiple of num_attention_heads " + headCount + " and no head_dim is given");
            }
            headDimension = hiddenSize / headCount;
        }
        if (headDimension % 2 != 0) {
            throw reader.refuse("head_dim", headDimension + " is odd; rotary embeddings rotate pairs of dimensions");
        }
        int vocabularySize = reader.positiveInt("vocab_size");
        int contextLength = reader.positiveInt("max_position_embeddings");
        float normEpsilon = (float) reader.optionalDouble("rms_norm_eps", 1e-6);
        RotaryEmbedding rotary = readRope(json, reader);
        // LlamaConfig and MistralConfig both default to untied embeddings.
        boolean tied = reader.optionalBoolean("tie_word_embeddings", false);

        int slidingWindow = 0;
        if (modelType.equals("mistral")) {
            // MistralConfig's default is 4096 when the field is absent; an explicit null means full attention.
            if (!json.has("sliding_window")) {
                slidingWindow = 4096;
            } else if (!json.get("sliding_window").isJsonNull()) {
                slidingWindow = reader.positiveInt("sliding_window");
            }
        } else if (reader.isSet("sliding_window")) {
            throw reader.refuse("sliding_window", "is set for model_type llama, whose attention has no window");
        }
        int bos = reader.isSet("bos_token_id") ? reader.nonNegativeInt("bos_token_id") : -1;
        int[] eos = reader.tokenIds("eos_token_id");
        return new ModelConfig(file, modelType, hiddenSize, intermediateSize, layerCount, headCount, keyValueHeadCount,
                headDimension, vocabularySize, contextLength, normEpsilon, rotary, tied, slidingWindow, bos, eos);
    }

    /**
     * rope_theta and the rope scaling, from the top level (transformers 4: rope_theta, rope_scaling) or
     * rope_parameters (transformers 5). Supported: the default rope, and rope_type llama3; every other scaling is
     * refused with the field named.
     */
    private static RotaryEmbedding readRope(JsonObject json, Reader reader) {
        if (reader.isSet("partial_rotary_factor") && reader.optionalDouble("partial_rotary_factor", 1.0) != 1.0) {
            throw reader.refuse("partial_rotary_factor", "is " + json.get("partial_rotary_factor") + "; only full rotary embeddings (1.0) are supported");
        }
        double theta = reader.optionalDouble("rope_theta", 10000.0);
        RotaryEmbedding.Llama3Scaling scaling = null;
        if (reader.isSet("rope_scaling")) {
            if (!json.get("rope_scaling").isJsonObject()) {
                throw reader.refuse("rope_scaling", "must be an object or null");
            }
            scaling = readScaling(json.getAsJsonObject("rope_scaling"), "rope_scaling", reader);
        }
        if (reader.isSet("rope_parameters")) {
            if (!json.get("rope_parameters").isJsonObject()) {
                throw reader.refuse("rope_parameters", "must be an object");
            }
            JsonObject parameters = json.getAsJsonObject("rope_parameters");
            RotaryEmbedding.Llama3Scaling nestedScaling = readScaling(parameters, "rope_parameters", reader);
            if (scaling != null && !scaling.equals(nestedScaling)) {
                throw reader.refuse("rope_parameters", "contradicts rope_scaling " + json.get("rope_scaling"));
            }
            scaling = nestedScaling;
            if (parameters.has("partial_rotary_factor") && !parameters.get("partial_rotary_factor").isJsonNull()
                    && parameters.get("partial_rotary_factor").getAsDouble() != 1.0) {
                throw reader.refuse("rope_parameters.partial_rotary_factor", "is " + parameters.get("partial_rotary_factor") + "; only 1.0 is supported");
            }
            if (parameters.has("rope_theta") && !parameters.get("rope_theta").isJsonNull()) {
                double nested = parameters.get("rope_theta").getAsDouble();
                if (reader.isSet("rope_theta") && nested != theta) {
                    throw reader.refuse("rope_parameters.rope_theta", nested + " contradicts the top-level rope_theta " + theta);
                }
                theta = nested;
            }
        }
        if (!(theta > 0) || Double.isInfinite(theta)) {
            throw reader.refuse("rope_theta", theta + " must be a positive number");
        }
        return new RotaryEmbedding(theta, scaling);
    }

    /** Null for the default rope; the llama3 parameters; refuses every other rope_type or a bare factor. */
    private static RotaryEmbedding.Llama3Scaling readScaling(JsonObject rope, String field, Reader reader) {
        String type = "default";
        for (String key : List.of("rope_type", "type")) {
            if (rope.has(key) && !rope.get(key).isJsonNull()) {
                type = rope.get(key).getAsString();
            }
        }
        if (type.equals("default")) {
            if (rope.has("factor") && !rope.get("factor").isJsonNull() && rope.get("factor").getAsDouble() != 1.0) {
                throw reader.refuse(field, "is " + rope + ": a scaling factor without a supported rope_type (supported: default, llama3)");
            }
            return null;
        }
        if (!type.equals("llama3")) {
            throw reader.refuse(field, "is " + rope + "; rope_type '" + type + "' is not supported (supported: default, llama3)");
        }
        float factor = requiredFloat(rope, "factor", field, reader);
        float low = requiredFloat(rope, "low_freq_factor", field, reader);
        float high = requiredFloat(rope, "high_freq_factor", field, reader);
        float original = requiredFloat(rope, "original_max_position_embeddings", field, reader);
        if (!(factor > 0) || !(low > 0) || !(high > low) || original < 1 || original != Math.rint(original)) {
            throw reader.refuse(field, "is " + rope + ": llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor"
                    + " and a positive integer original_max_position_embeddings");
        }
        return new RotaryEmbedding.Llama3Scaling(factor, low, high, (int) original);
    }

    private static float requiredFloat(JsonObject object, String key, String field, Reader reader) {
        if (!object.has(key) || object.get(key).isJsonNull() || !object.get(key).isJsonPrimitive()
                || !object.get(key).getAsJsonPrimitive().isNumber()) {
            throw reader.refuse(field + "." + key, "is missing or not a number (rope_type llama3 needs it)");
        }
        return object.get(key).getAsFloat();
    }

    /** Typed access to config fields; every failure names the file and the field. */
    private record Reader(JsonObject json, Path file) {
        BitDeltaException refuse(String field, String why) {
            return new BitDeltaException(file + ": field '" + field + "' " + why);
        }

        /** The field's value, or null where it is absent or JSON null. */
        private JsonElement value(String field) {
            JsonElement value = json.get(field);
            return value == null || value.isJsonNull() ? null : value;
        }

        boolean isSet(String field) {
            JsonElement value = value(field);
            return value != null && !(value.isJsonPrimitive() && value.getAsJsonPrimitive().isBoolean() && !value.getAsBoolean());
        }

        String requiredString(String field) {
            if (value(field) == null) {
                throw refuse(field, "is missing");
            }
            return optionalString(field, null);
        }

        String optionalString(String field, String fallback) {
            JsonPrimitive value = optionalPrimitive(field, JsonPrimitive::isString, "a string");
            return value == null ? fallback : value.getAsString();
        }

        boolean optionalBoolean(String field, boolean fallback) {
            JsonPrimitive value = optionalPrimitive(field, JsonPrimitive::isBoolean, "true or false");
            return value == null ? fallback : value.getAsBoolean();
        }

        double optionalDouble(String field, double fallback) {
            JsonPrimitive value = optionalPrimitive(field, JsonPrimitive::isNumber, "a number");
            return value == null ? fallback : value.getAsDouble();
        }

        /** The field's value if it is set, refused unless it is a primitive of the {@code kind} described; else null. */
        private JsonPrimitive optionalPrimitive(String field, Predicate<JsonPrimitive> kind, String description) {
            JsonElement value = value(field);
            if (value == null) {
                return null;
            }
            if (!value.isJsonPrimitive() || !kind.test(value.getAsJsonPrimitive())) {
                throw refuse(field, "must be " + description + ", got " + value);
            }
            return value.getAsJsonPrimitive();
        }

        int positiveInt(String field) {
            int value = nonNegativeInt(field);
            if (value <= 0) {
                throw refuse(field, "must be positive, got " + value);
            }
            return value;
        }

        int nonNegativeInt(String field) {
            JsonElement value = value(field);
            if (value == null) {
                throw refuse(field, "is missing");
            }
            return intOf(field, value);
        }

        private int intOf(String field, JsonElement value) {
            if (!value.isJsonPrimitive() || !value.getAsJsonPrimitive().isNumber()) {
                throw refuse(field, "must be an integer, got " + value);
            }
            double number = value.getAsDouble();
            if (number != Math.rint(number) || number < 0 || number > Integer.MAX_VALUE) {
                throw refuse(field, "must be a non-negative integer, got " + value);
            }
            return (int) number;
        }

        int[] tokenIds(String field) {
            JsonElement value = value(field);
            if (value == null) {
                return new int[0];
            }
            if (value.isJsonArray()) {
                JsonArray array = value.getAsJsonArray();
                List<Integer> ids = new ArrayList<>();
                for (JsonElement element : array) {
                    ids.add(intOf(field, element));
                }
                return ids.stream().mapToInt(Integer::intValue).toArray();
            }
            return new int[]{intOf(field, value)};
        }
    }
}
