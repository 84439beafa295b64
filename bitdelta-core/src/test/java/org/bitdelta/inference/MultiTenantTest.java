package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One loaded stories260K base serving base, alice and shakespeare (both compressed against it) in the same
 * batches: each row of a mixed batch equals that tenant run alone, and tenants come and go without disturbing
 * the sequences of the others.
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
            int[] tokens = new int[length];
            tokens[0] = 1;
            for (int i = 1; i < length; i++) {
                tokens[i] = 3 + random.nextInt(model.vocabularySize() - 3);
            }
            sequences.add(tokens);
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

    @Test
    void batchedGenerationEqualsEachTenantAlone() {
        int[] prompt = model.tokenizer().encode("Once upon a time");
        List<Generator.Request> requests = List.of(
                Generator.Request.greedy("base", prompt, 40),
                Generator.Request.greedy("alice", prompt, 40),
                Generator.Request.greedy("shakespeare", prompt, 40),
                new Generator.Request("alice", prompt, 40, 0.9, SEED),
                new Generator.Request("shakespeare", model.tokenizer().encode("The king"), 25, 1.2, SEED + 1));
        Generator generator = new Generator(model);
        List<Generator.Result> batched = generator.generate(requests);
        for (int i = 0; i < requests.size(); i++) {
            Generator.Result alone = generator.generate(List.of(requests.get(i))).getFirst();
            assertArrayEquals(alone.tokens(), batched.get(i).tokens(), "request " + i + " (" + requests.get(i).tenant() + ", seed " + SEED + ")");
            assertEquals(alone.finishReason(), batched.get(i).finishReason(), "request " + i);
            System.out.println(requests.get(i).tenant() + " (T=" + requests.get(i).temperature() + "): " + model.tokenizer().decode(batched.get(i).tokens()));
        }
        assertFalse(Arrays.equals(batched.get(0).tokens(), batched.get(1).tokens()), "alice continues differently from base");
        assertNotEquals(Arrays.toString(batched.get(1).tokens()), Arrays.toString(batched.get(3).tokens()), "sampling differs from greedy");
        Generator.Result again = generator.generate(List.of(requests.get(3))).getFirst();
        assertArrayEquals(batched.get(3).tokens(), again.tokens(), "same seed, same sample (seed " + SEED + ")");
    }

    @Test
    void removingATenantMidRunStopsOnlyItsSequenceAndAddingOneDisturbsNobody() {
        try (DeltaModel extra = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-shakespeare"))) {
            model.addTenant("shakespeare-2", extra);
            int[] prompt = {1};
            List<Generator.Request> requests = List.of(
                    Generator.Request.greedy("base", prompt, 30),
                    Generator.Request.greedy("alice", prompt, 30),
                    Generator.Request.greedy("shakespeare-2", prompt, 30));
            Generator generator = new Generator(model);
            List<Generator.Result> expected = List.of(
                    generator.generate(List.of(requests.get(0))).getFirst(),
                    generator.generate(List.of(requests.get(1))).getFirst());
            AtomicInteger tokensSeen = new AtomicInteger();
            List<Generator.Result> results = generator.generate(requests, (request, token) -> {
                if (request == 2 && tokensSeen.incrementAndGet() == 10) {
                    model.removeTenant("shakespeare-2");
                    model.addTenant("alice-again", alice);
                }
            });
            assertArrayEquals(expected.get(0).tokens(), results.get(0).tokens(), "base undisturbed");
            assertArrayEquals(expected.get(1).tokens(), results.get(1).tokens(), "alice undisturbed");
            assertEquals(Generator.FinishReason.TENANT_REMOVED, results.get(2).finishReason());
            assertEquals(10, results.get(2).tokens().length, "the removed tenant's tokens up to its removal are kept");
            assertFalse(model.hasTenant("shakespeare-2"));
            // The tenant added mid-run serves like the original alice.
            assertArrayEquals(expected.get(1).tokens(),
                    generator.generate(List.of(Generator.Request.greedy("alice-again", prompt, 30))).getFirst().tokens());
            model.removeTenant("alice-again");
        }
    }

    @Test
    void tenantsAddedAndRemovedFromAnotherThreadDoNotDisturbRunningBatches() throws Exception {
        int[] prompt = {1};
        List<Generator.Request> requests = List.of(
                Generator.Request.greedy("base", prompt, 60),
                Generator.Request.greedy("alice", prompt, 60),
                Generator.Request.greedy("shakespeare", prompt, 60));
        Generator generator = new Generator(model);
        List<Generator.Result> expected = generator.generate(requests);
        AtomicBoolean running = new AtomicBoolean(true);
        ExecutorService churn = Executors.newSingleThreadExecutor();
        try {
            Future<Integer> cycles = churn.submit(() -> {
                int count = 0;
                while (running.get()) {
                    model.addTenant("churn", shakespeare);
                    model.logits("churn", new int[]{1, 300});
                    model.removeTenant("churn");
                    count++;
                }
                return count;
            });
            for (int round = 0; round < 3; round++) {
                List<Generator.Result> results = generator.generate(requests);
                for (int i = 0; i < requests.size(); i++) {
                    assertArrayEquals(expected.get(i).tokens(), results.get(i).tokens(), "round " + round + ", request " + i);
                }
            }
            running.set(false);
            assertTrue(cycles.get(60, TimeUnit.SECONDS) > 0, "the other thread added and removed tenants meanwhile");
        } finally {
            running.set(false);
            churn.shutdown();
            assertTrue(churn.awaitTermination(60, TimeUnit.SECONDS));
        }
        assertEquals(List.of("base", "alice", "shakespeare"), model.tenants());
    }
}
