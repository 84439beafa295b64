package org.bitdelta.testing;

import org.bitdelta.internal.format.FloatRounding;
import org.bitdelta.internal.safetensors.SafetensorsWriter;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Small Llama-shaped Hugging Face folders with seeded random weights, for tests. */
public final class SyntheticModels {
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private SyntheticModels() {
    }

    /** A tensor of {@code dtype} holding {@code values} rounded to it. */
    public static Tensor tensor(String name, DType dtype, float[] values, long... shape) {
        MemorySegment data = MemorySegment.ofArray(new byte[values.length * dtype.byteSize()]);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> data.set(FLOAT_LE, i * 4L, values[i]);
                case BF16 -> data.set(SHORT_LE, i * 2L, FloatRounding.toBfloat16(values[i]));
                case F16 -> data.set(SHORT_LE, i * 2L, Float.floatToFloat16(values[i]));
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new Tensor(name, dtype, shape, data);
    }

    public static float[] gaussian(Random random, int count, double sigma) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) (random.nextGaussian() * sigma);
        }
        return values;
    }

    /** The tensors of a tiny Llama: layers × (q,k,v,o,gate,up,down, 2 norms), embeddings, final norm, lm_head. */
    public static Map<String, Tensor> llamaTensors(Random random, DType dtype, int layers, int hidden, int intermediate, int vocab) {
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        add(tensors, random, dtype, "model.embed_tokens.weight", vocab, hidden, 1.0);
        for (int layer = 0; layer < layers; layer++) {
            String prefix = "model.layers." + layer + ".";
            for (String projection : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")) {
                add(tensors, random, dtype, prefix + projection + ".weight", hidden, hidden, 0.1);
            }
            add(tensors, random, dtype, prefix + "mlp.gate_proj.weight", intermediate, hidden, 0.1);
            add(tensors, random, dtype, prefix + "mlp.up_proj.weight", intermediate, hidden, 0.1);
            add(tensors, random, dtype, prefix + "mlp.down_proj.weight", hidden, intermediate, 0.1);
            tensors.put(prefix + "input_layernorm.weight", tensor(prefix + "input_layernorm.weight", dtype, ones(hidden), hidden));
            tensors.put(prefix + "post_attention_layernorm.weight", tensor(prefix + "post_attention_layernorm.weight", dtype, ones(hidden), hidden));
        }
        tensors.put("model.norm.weight", tensor("model.norm.weight", dtype, ones(hidden), hidden));
        add(tensors, random, dtype, "lm_head.weight", vocab, hidden, 0.1);
        return tensors;
    }

    /** A fine-tune of {@code base}: every projection plus a small random delta; embeddings changed too. */
    public static Map<String, Tensor> finetune(Map<String, Tensor> base, Random random, double relativeDelta) {
        Map<String, Tensor> tuned = new LinkedHashMap<>();
        for (Tensor tensor : base.values()) {
            boolean changes = tensor.name().contains("_proj") || tensor.name().contains("embed_tokens");
            if (!changes) {
                tuned.put(tensor.name(), tensor);
                continue;
            }
            float[] values = tensor.toFloatArray();
            for (int i = 0; i < values.length; i++) {
                values[i] += (float) (random.nextGaussian() * relativeDelta * 0.1);
            }
            tuned.put(tensor.name(), tensor(tensor.name(), tensor.dtype(), values, tensor.shape()));
        }
        return tuned;
    }

    private static void add(Map<String, Tensor> tensors, Random random, DType dtype, String name, int rows, int cols, double sigma) {
        tensors.put(name, tensor(name, dtype, gaussian(random, rows * cols, sigma), rows, cols));
    }

    private static float[] ones(int count) {
        float[] values = new float[count];
        java.util.Arrays.fill(values, 1f);
        return values;
    }

    /** Writes a HF folder: config.json for a Llama of these sizes, model.safetensors, a tokenizer stub. */
    public static Path writeFolder(Path folder, Map<String, Tensor> tensors, int layers, int hidden, int intermediate, int vocab) throws IOException {
        Files.createDirectories(folder);
        String config = """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": %d, "intermediate_size": %d,
                 "num_hidden_layers": %d, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": %d,
                 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 256, "hidden_act": "silu",
                 "tie_word_embeddings": false, "torch_dtype": "float32"}
                """.formatted(hidden, intermediate, layers, vocab);
        Files.writeString(folder.resolve("config.json"), config);
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
        List<SafetensorsWriter.Source> sources = new ArrayList<>();
        tensors.values().forEach(tensor -> sources.add(SafetensorsWriter.Source.of(tensor)));
        SafetensorsWriter.write(folder.resolve("model.safetensors"), Map.of("format", "pt"), sources, true);
        return folder;
    }
}
