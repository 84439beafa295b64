package org.bitdelta.internal.model;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.testing.TestData;
import org.bitdelta.testing.TestTokens;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The decoder on the CPU backend is batch-invariant, bit for bit: a sequence's logits do not depend on the other
 * sequences of its batch (their tenants, lengths and number), nor on how its tokens are split into steps. This is
 * what lets the serving engine promise a greedy request the same answer in any batch (a tolerance would not: one
 * flipped last bit can change an argmax).
 */
class DecoderBatchInvarianceTest {
    private static final long SEED = Long.getLong("bitdelta.test.seed", 4711L);
    private static VectorCpuBackend backend;
    private static DeltaModel alice;
    private static DeltaModel shakespeare;

    @BeforeAll
    static void load() {
        backend = new VectorCpuBackend(2);
        alice = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-alice"));
        shakespeare = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-shakespeare"));
    }

    @AfterAll
    static void close() {
        alice.close();
        shakespeare.close();
        backend.close();
    }

    private static Decoder open(String model, int maxRows) {
        Decoder decoder = Decoder.load(TestData.bundledModel(model), backend, false,
                DecoderOptions.defaults(ModelLoader.config(TestData.bundledModel(model)).contextLength()).withMaxRows(maxRows));
        if (model.equals("stories260K")) {
            decoder.addTenant("alice", "alice", alice);
            decoder.addTenant("shakespeare", "shakespeare", shakespeare);
        }
        return decoder;
    }

    private static float[] alone(Decoder decoder, String tenant, int[] tokens) {
        try (Sequence sequence = decoder.newSequence(tenant)) {
            return decoder.forward(List.of(sequence), List.of(tokens), true).getFirst();
        }
    }

    @Test
    void aSequencesLogitsAreTheSameAloneAndInAnyMixedBatch() {
        SplittableRandom random = new SplittableRandom(SEED);
        try (Decoder decoder = open("stories260K", 1024)) {
            List<String> tenants = List.of("base", "alice", "shakespeare", "alice", "base", "shakespeare", "alice");
            List<int[]> tokens = new ArrayList<>();
            for (int length : new int[]{37, 64, 5, 64, 1, 100, 2}) {
                tokens.add(TestTokens.random(random, length, decoder.config().vocabularySize()));
            }
            List<Sequence> sequences = new ArrayList<>();
            for (String tenant : tenants) {
                sequences.add(decoder.newSequence(tenant));
            }
            List<float[]> batched = decoder.forward(sequences, tokens, true);
            sequences.forEach(Sequence::close);
            for (int i = 0; i < tenants.size(); i++) {
                assertArrayEquals(alone(decoder, tenants.get(i), tokens.get(i)), batched.get(i),
                        "sequence " + i + " (" + tenants.get(i) + ", " + tokens.get(i).length + " tokens), seed " + SEED);
            }
        }
    }

    @Test
    void aSequencesLogitsDoNotDependOnHowItsTokensAreSplitIntoSteps() {
        for (String model : List.of("stories260K", "mistral-tiny")) {
            SplittableRandom random = new SplittableRandom(SEED + model.length());
            String tenant = model.equals("stories260K") ? "alice" : "base";
            try (Decoder whole = open(model, 1024); Decoder narrow = open(model, 7)) {
                int vocabulary = whole.config().vocabularySize();
                int[] tokens = TestTokens.random(random, 60, vocabulary);
                float[] expected = alone(whole, tenant, tokens);
                // Steps of at most 7 rows (Decoder.forward splits the work), then one token at a time beside other
                // sequences of other lengths and tenants.
                assertArrayEquals(expected, alone(narrow, tenant, tokens), model + ": steps of 7 rows, seed " + SEED);
                Sequence chunked = whole.newSequence(tenant);
                Sequence other = whole.newSequence("base");
                float[] actual = new float[expected.length];
                int position = 0;
                while (position < tokens.length) {
                    int length = Math.min(position == 0 ? 9 : position == 30 ? 13 : 1, tokens.length - position);
                    int[] chunk = Arrays.copyOfRange(tokens, position, position + length);
                    int[] otherChunk = TestTokens.random(random, 1 + random.nextInt(3), vocabulary);
                    float[] logits = whole.forward(List.of(other, chunked), List.of(otherChunk, chunk), true).get(1);
                    System.arraycopy(logits, 0, actual, position * vocabulary, logits.length);
                    position += length;
                    if (other.length() + 3 > whole.config().contextLength()) {
                        other.close();
                        other = whole.newSequence("base");
                    }
                }
                assertEquals(tokens.length, chunked.length());
                assertArrayEquals(expected, actual, model + ": chunks of 9, 1, ..., 13, 1, ... beside another sequence, seed " + SEED);
                chunked.close();
                other.close();
            }
        }
    }
}
