package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.bitdelta.testing.TestTokens;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One loaded stories260K base serving base, alice and shakespeare (both compressed against it) in the same
 * batches: each row of a mixed batch equals that tenant run alone. (Generation with tenants coming and going is
 * tested on the serving engine: EngineBatchingTest, EngineTenantsTest.)
 */
class MultiTenantTest {
    private static final long SEED = 20261122L;
    private static DeltaModel alice;
    private static DeltaModel shakespeare;
    private static DecoderModel model;

    @BeforeAll
    static void load() {
        alice = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-alice"));
        shakespeare = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-shakespeare"));
        model = DecoderModel.load(TestData.bundledModel("stories260K"));
        model.addTenant("alice", alice);
        model.addTenant("shakespeare", shakespeare);
    }

    @AfterAll
    static void close() {
        model.close();
        alice.close();
        shakespeare.close();
    }

    /** Seeded token sequences starting with BOS, of the given lengths. */
    private static List<int[]> sequences(long seed, int... lengths) {
        SplittableRandom random = new SplittableRandom(seed);
        List<int[]> sequences = new ArrayList<>();
        for (int length : lengths) {
            sequences.add(TestTokens.random(random, length, model.vocabularySize()));
        }
        return sequences;
    }

    @Test
    void theFineTunesReplaceEmbeddingsAndNormsSoPerTenantTensorsAreExercised() {
        for (DeltaModel delta : List.of(alice, shakespeare)) {
            assertTrue(delta.tensors().containsKey("model.embed_tokens.weight"), "tensors: " + delta.tensors().keySet());
            assertTrue(delta.tensors().containsKey("model.norm.weight"), "tensors: " + delta.tensors().keySet());
            assertTrue(delta.tensors().containsKey("model.layers.0.input_layernorm.weight"), "tensors: " + delta.tensors().keySet());
        }
    }

    @Test
    void aMixedBatchEqualsEachTenantAlone() {
        List<String> tenants = List.of("base", "alice", "shakespeare", "alice", "base", "shakespeare");
        List<int[]> sequences = sequences(SEED, 37, 64, 5, 64, 1, 100);
        List<float[]> batched = model.logits(tenants, sequences);
        for (int i = 0; i < tenants.size(); i++) {
            float[] alone = model.logits(tenants.get(i), sequences.get(i));
            double error = Norms.relativeError(batched.get(i), alone);
            assertTrue(error < 1e-6, "sequence " + i + " (" + tenants.get(i) + "): batched vs alone relative error " + error + " (seed " + SEED + ")");
        }
        // And the tenants really differ from each other on the same tokens.
        List<float[]> same = model.logits(List.of("base", "alice", "shakespeare"), List.of(sequences.get(1), sequences.get(1), sequences.get(1)));
        assertTrue(Norms.relativeError(same.get(1), same.get(0)) > 1e-3, "alice differs from base");
        assertTrue(Norms.relativeError(same.get(2), same.get(1)) > 1e-3, "shakespeare differs from alice");
    }
}
