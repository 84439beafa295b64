package org.bitdelta.compress;

import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.SyntheticModels;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every kind of bad input: a clear error naming the file and tensor, and nothing written. */
class BadInputTest {
    private static final int LAYERS = 1;
    private static final int HIDDEN = 16;
    private static final int INTERMEDIATE = 24;
    private static final int VOCAB = 32;
    private Path folder;
    private Path base;
    private Map<String, Tensor> baseTensors;

    @BeforeEach
    void createBase() throws IOException {
        folder = Files.createTempDirectory("bad-input-");
        baseTensors = SyntheticModels.llamaTensors(new Random(7), DType.BF16, LAYERS, HIDDEN, INTERMEDIATE, VOCAB);
        base = SyntheticModels.writeFolder(folder.resolve("base"), baseTensors, LAYERS, HIDDEN, INTERMEDIATE, VOCAB);
    }

    @AfterEach
    void removeFolder() throws IOException {
        AtomicFiles.deleteRecursively(folder);
    }

    private Path finetune(String name, Map<String, Tensor> tensors) throws IOException {
        return SyntheticModels.writeFolder(folder.resolve(name), tensors, LAYERS, HIDDEN, INTERMEDIATE, VOCAB);
    }

    private Map<String, Tensor> tunedTensors() {
        return new LinkedHashMap<>(SyntheticModels.finetune(baseTensors, new Random(8), 0.1));
    }

    private void assertCompressFails(Path finetuned, String... fragments) {
        Path out = folder.resolve("out.bitdelta");
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> {
            try (DeltaModel delta = BitDelta.compress(base, finetuned)) {
                delta.save(out);
            }
        });
        for (String fragment : fragments) {
            assertTrue(error.getMessage().contains(fragment), "expected '" + fragment + "' in: " + error.getMessage());
        }
        assertFalse(Files.exists(out), "no output file");
    }

    @Test
    void differentShape() throws IOException {
        Map<String, Tensor> tuned = tunedTensors();
        String name = "model.layers.0.mlp.up_proj.weight";
        tuned.put(name, SyntheticModels.tensor(name, DType.BF16, new float[INTERMEDIATE * (HIDDEN - 1)], INTERMEDIATE, HIDDEN - 1));
        assertCompressFails(finetune("shape", tuned), name, "shape", "model.safetensors");
    }

    @Test
    void differentDtype() throws IOException {
        Map<String, Tensor> tuned = tunedTensors();
        String name = "model.layers.0.self_attn.q_proj.weight";
        tuned.put(name, SyntheticModels.tensor(name, DType.F32, tuned.get(name).toFloatArray(), HIDDEN, HIDDEN));
        assertCompressFails(finetune("dtype", tuned), name, "f32", "bf16");
    }

    @Test
    void differentTensorSets() throws IOException {
        Map<String, Tensor> tuned = tunedTensors();
        tuned.remove("model.layers.0.mlp.down_proj.weight");
        tuned.put("model.extra.weight", SyntheticModels.tensor("model.extra.weight", DType.BF16, new float[]{1, 2}, 2));
        assertCompressFails(finetune("sets", tuned), "missing 'model.layers.0.mlp.down_proj.weight'", "not in the base 'model.extra.weight'");
    }

    @Test
    void differentArchitecture() throws IOException {
        Path tuned = finetune("architecture", tunedTensors());
        Path config = tuned.resolve("config.json");
        Files.writeString(config, Files.readString(config).replace("\"rope_theta\": 10000.0", "\"rope_theta\": 500000.0"));
        assertCompressFails(tuned, "config.json", "rope_theta", "500000");
        Files.writeString(config, Files.readString(config).replace("\"model_type\": \"llama\"", "\"model_type\": \"mistral\""));
        assertCompressFails(tuned, "model_type", "mistral");
    }

    @Test
    void nanOrInfinityInAWeight() throws IOException {
        Map<String, Tensor> tuned = tunedTensors();
        String name = "model.layers.0.self_attn.v_proj.weight";
        float[] values = tuned.get(name).toFloatArray();
        values[3 * HIDDEN + 5] = Float.NaN;
        tuned.put(name, SyntheticModels.tensor(name, DType.BF16, values, HIDDEN, HIDDEN));
        assertCompressFails(finetune("nan", tuned), name, "NaN", "[3, 5]", "fine-tune");

        Map<String, Tensor> infinite = tunedTensors();
        String embedding = "model.embed_tokens.weight";
        float[] embeddingValues = infinite.get(embedding).toFloatArray();
        embeddingValues[40] = Float.POSITIVE_INFINITY;
        infinite.put(embedding, SyntheticModels.tensor(embedding, DType.BF16, embeddingValues, VOCAB, HIDDEN));
        assertCompressFails(finetune("infinite", infinite), embedding, "Infinity");
    }

    @Test
    void truncatedFile() throws IOException {
        Path tuned = finetune("truncated", tunedTensors());
        Path weights = tuned.resolve("model.safetensors");
        byte[] bytes = Files.readAllBytes(weights);
        Files.write(weights, Arrays.copyOf(bytes, bytes.length - 100));
        assertCompressFails(tuned, weights.toString(), "truncated");
    }

    @Test
    void mergeWithADeltaOfAnotherBase() throws IOException {
        Path tuned = finetune("tuned", tunedTensors());
        Map<String, Tensor> otherBaseTensors = SyntheticModels.llamaTensors(new Random(99), DType.BF16, LAYERS, HIDDEN, INTERMEDIATE, VOCAB);
        Path otherBase = SyntheticModels.writeFolder(folder.resolve("other-base"), otherBaseTensors, LAYERS, HIDDEN, INTERMEDIATE, VOCAB);
        Path out = folder.resolve("merged");
        try (DeltaModel delta = BitDelta.compress(base, tuned)) {
            BitDeltaException error = assertThrows(BitDeltaException.class, () -> BitDelta.merge(otherBase, delta, out));
            assertTrue(error.getMessage().contains("was not made from the base") && error.getMessage().contains(otherBase.toString()),
                    error.getMessage());
        }
        assertFalse(Files.exists(out), "no output folder");
        try (var listing = Files.list(folder)) {
            assertTrue(listing.noneMatch(path -> path.getFileName().toString().startsWith(".merged")), "no temporary folder left");
        }
    }

    @Test
    void existingOutputsAreRefusedUnlessOverwriting() throws IOException {
        Path tuned = finetune("tuned", tunedTensors());
        Path file = folder.resolve("existing.bitdelta");
        Files.writeString(file, "keep me");
        Path mergedFolder = Files.createDirectories(folder.resolve("existing-folder"));
        Files.writeString(mergedFolder.resolve("note.txt"), "keep me too");
        try (DeltaModel delta = BitDelta.compress(base, tuned)) {
            BitDeltaException error = assertThrows(BitDeltaException.class, () -> delta.save(file));
            assertTrue(error.getMessage().contains("already exists") && error.getMessage().contains(file.toString()), error.getMessage());
            assertTrue(Files.readString(file).equals("keep me"));
            assertThrows(BitDeltaException.class, () -> BitDelta.merge(base, delta, mergedFolder));
            assertTrue(Files.readString(mergedFolder.resolve("note.txt")).equals("keep me too"));

            delta.save(file, true);
            BitDelta.merge(base, delta, mergedFolder, true, org.bitdelta.ProgressListener.NONE);
        }
        try (DeltaModel loaded = DeltaModel.load(file)) {
            assertTrue(loaded.matrices().size() == 7 * LAYERS);
        }
        assertTrue(Files.exists(mergedFolder.resolve("model.safetensors")));
        assertFalse(Files.exists(mergedFolder.resolve("note.txt")), "the folder was replaced whole");
    }

    @Test
    void loadRefusesAPlainSafetensorsFile() {
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> DeltaModel.load(base.resolve("model.safetensors")));
        assertTrue(error.getMessage().contains("not a .bitdelta file"), error.getMessage());
    }
}
