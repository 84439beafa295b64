package org.bitdelta.internal.model;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.BitDeltaException;
import org.bitdelta.inference.DecoderModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** config.json: what is read, and every field that would change the math unsupported is refused by name. */
class ModelConfigTest {
    private static final Path FILE = Path.of("some/config.json");

    private static JsonObject stories() throws IOException {
        return JsonParser.parseString(Files.readString(TestData.bundledModel("stories260K").resolve("config.json"))).getAsJsonObject();
    }

    @Test
    void readsLlamaAndMistralConfigs() throws IOException {
        ModelConfig llama = ModelConfig.parse(stories(), FILE);
        assertEquals("llama", llama.modelType());
        assertEquals(8, llama.headCount());
        assertEquals(4, llama.keyValueHeadCount());
        assertEquals(8, llama.headDimension());
        assertEquals(512, llama.contextLength());
        assertTrue(llama.tiedEmbeddings());
        assertEquals(0, llama.slidingWindow());
        assertEquals(1, llama.bosTokenId());
        assertArrayEquals(new int[]{2}, llama.eosTokenIds());

        ModelConfig mistral = ModelConfig.read(TestData.bundledModel("mistral-tiny"));
        assertEquals(16, mistral.slidingWindow());
        assertEquals(24, mistral.headDimension());
        assertEquals(1e6, mistral.ropeTheta());
        assertTrue(!mistral.tiedEmbeddings());

    }

    /** config.json of the data folder's models/tinyllama-shakespeare-base, as transformers 5.17 wrote it (rope_parameters, no rope_theta). */
    static final String TRANSFORMERS5_CONFIG = """
            {
              "architectures": [
                "LlamaForCausalLM"
              ],
              "attention_bias": false,
              "attention_dropout": 0.0,
              "bos_token_id": 0,
              "dtype": "bfloat16",
              "eos_token_id": 1,
              "head_dim": 32,
              "hidden_act": "silu",
              "hidden_size": 256,
              "initializer_range": 0.02,
              "intermediate_size": 688,
              "max_position_embeddings": 512,
              "mlp_bias": false,
              "model_type": "llama",
              "num_attention_heads": 8,
              "num_hidden_layers": 6,
              "num_key_value_heads": 4,
              "pad_token_id": 2,
              "pretraining_tp": 1,
              "rms_norm_eps": 1e-05,
              "rope_parameters": {
                "rope_theta": 10000.0,
                "rope_type": "default"
              },
              "tie_word_embeddings": false,
              "transformers_version": "5.17.0",
              "use_cache": true,
              "vocab_size": 4096
            }
            """;

    @Test
    void readsATransformers5ConfigWithRopeParameters(@TempDir Path folder) throws IOException {
        Files.writeString(folder.resolve("config.json"), TRANSFORMERS5_CONFIG);
        ModelConfig transformers5 = ModelConfig.read(folder);
        assertEquals(10000.0, transformers5.ropeTheta(), "rope_parameters.rope_theta");
        assertEquals("llama", transformers5.modelType());
        assertEquals(32, transformers5.headDimension());
        assertEquals(4, transformers5.keyValueHeadCount());
        assertTrue(!transformers5.tiedEmbeddings());
        assertEquals(0, transformers5.bosTokenId());
        assertArrayEquals(new int[]{1}, transformers5.eosTokenIds());

        // 10000 is also the default: a theta other than the default shows that rope_parameters is what was read.
        JsonObject json = JsonParser.parseString(TRANSFORMERS5_CONFIG).getAsJsonObject();
        json.getAsJsonObject("rope_parameters").addProperty("rope_theta", 500000.0);
        assertEquals(500000.0, ModelConfig.parse(json, FILE).ropeTheta(), "rope_parameters.rope_theta");
    }

    @Test
    void mistralWindowDefaultsLikeTransformers() throws IOException {
        JsonObject json = JsonParser.parseString(Files.readString(TestData.bundledModel("mistral-tiny").resolve("config.json"))).getAsJsonObject();
        json.remove("sliding_window");
        assertEquals(4096, ModelConfig.parse(json, FILE).slidingWindow(), "MistralConfig's default");
        json.add("sliding_window", JsonNull.INSTANCE);
        assertEquals(0, ModelConfig.parse(json, FILE).slidingWindow(), "null: full attention");
    }

    @ParameterizedTest(name = "{0} = {1}")
    @CsvSource(delimiter = '|', value = {
            "model_type | \"qwen2\"",
            "architectures | [\"Qwen2ForCausalLM\"]",
            "rope_scaling | {\"rope_type\": \"linear\", \"factor\": 2.0}",
            "rope_scaling | {\"type\": \"dynamic\", \"factor\": 4.0}",
            "rope_parameters | {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0}",
            "partial_rotary_factor | 0.5",
            "hidden_act | \"gelu\"",
            "attention_bias | true",
            "mlp_bias | true",
            "sliding_window | 128",
            "quantization_config | {\"quant_method\": \"gptq\"}",
            "num_key_value_heads | 3",
            "head_dim | 7"})
    void refusesWhatItDoesNotImplement(String field, String json) throws IOException {
        JsonObject config = stories();
        config.add(field, JsonParser.parseString(json));
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> ModelConfig.parse(config, FILE));
        assertTrue(error.getMessage().contains(FILE.toString()), error.getMessage());
        assertTrue(error.getMessage().contains("'" + field + "'") || error.getMessage().contains("'" + field + "."), error.getMessage());
        System.out.println("refused: " + error.getMessage());
    }

    @Test
    void anUnsupportedArchitectureFolderFailsToLoadNamingConfigAndField(@TempDir Path folder) throws IOException {
        JsonObject config = stories();
        config.addProperty("model_type", "gemma");
        Files.writeString(folder.resolve("config.json"), config.toString());
        Files.copy(TestData.bundledModel("stories260K").resolve("model.safetensors"), folder.resolve("model.safetensors"));
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> DecoderModel.load(folder));
        assertTrue(error.getMessage().contains(folder.resolve("config.json").toString()) && error.getMessage().contains("model_type")
                && error.getMessage().contains("gemma"), error.getMessage());
    }

    @Test
    void aMissingWeightIsNamed(@TempDir Path folder) throws IOException {
        JsonObject config = stories();
        config.addProperty("tie_word_embeddings", false); // now lm_head.weight is needed, and the file has none
        Files.writeString(folder.resolve("config.json"), config.toString());
        Files.copy(TestData.bundledModel("stories260K").resolve("model.safetensors"), folder.resolve("model.safetensors"));
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> DecoderModel.load(folder));
        assertTrue(error.getMessage().contains("lm_head.weight"), error.getMessage());
    }
}
