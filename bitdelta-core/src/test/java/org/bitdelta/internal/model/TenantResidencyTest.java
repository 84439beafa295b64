package org.bitdelta.internal.model;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Tenants under a device byte budget (uploaded on first use, least recently used idle ones evicted, never one an
 * open sequence uses, a tenant that cannot fit fails its own sequences alone) and the paged KV cache (sequences of
 * different lengths share steps, join and leave, and return their blocks).
 */
class TenantResidencyTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static DeltaModel alice;
    private static DeltaModel shakespeare;
    private static TensorBackend backend;

    @BeforeAll
    static void compress() {
        alice = BitDelta.compress(BASE, TestData.bundledModel("stories260K-ft-alice"));
        shakespeare = BitDelta.compress(BASE, TestData.bundledModel("stories260K-ft-shakespeare"));
        backend = new VectorCpuBackend(2);
    }

    @AfterAll
    static void close() {
        alice.close();
        shakespeare.close();
        backend.close();
    }

    private static long tenantBytes(DeltaModel delta) {
        long bytes = 0;
        for (BinaryDelta matrix : delta.matrices()) {
            bytes += matrix.signs().byteSize() + 4L * matrix.scales().length;
        }
        for (var tensor : delta.tensors().values()) {
            bytes += tensor.byteSize();
        }
        return bytes;
    }

    private static Decoder open(long budget) {
        DecoderOptions options = DecoderOptions.defaults(512).withTenantBudgetBytes(budget).withKvCacheTokens(256).withKvBlockSize(16);
        return Decoder.load(BASE, backend, false, options);
    }

    /** A decoder with both fine-tunes added as tenants (neither uploaded yet). */
    private static Decoder openWithBoth(long budget) {
        Decoder decoder = open(budget);
        decoder.addTenant("alice", "alice.bitdelta", alice);
        decoder.addTenant("shakespeare", "shakespeare.bitdelta", shakespeare);
        return decoder;
    }

    /** A tenant budget with room for either fine-tune but not both. */
    private static long roomForOne() {
        long one = Math.max(tenantBytes(alice), tenantBytes(shakespeare));
        return one + one / 2;
    }

    private static int[] prompt() {
        return new int[]{1, 403, 407, 261, 378};
    }

    @Test
    void tenantsAreUploadedOnFirstUseAndTheLeastRecentlyUsedIdleOneIsEvicted() {
        try (Decoder decoder = openWithBoth(roomForOne())) {
            assertTrue(decoder.memory().tenantBytes().isEmpty(), "nothing is uploaded before a step needs it");

            float[] aliceAlone = logits(decoder, "alice");
            assertEquals(List.of(tenantBytes(alice)), List.copyOf(decoder.memory().tenantBytes().values()));
            assertTrue(slot(decoder, "alice") > 0);

            // Alice is idle now: shakespeare's first step evicts her to stay within the budget.
            logits(decoder, "shakespeare");
            assertEquals(-1, slot(decoder, "alice"), "alice evicted");
            assertTrue(slot(decoder, "shakespeare") > 0);
            assertEquals(List.of(tenantBytes(shakespeare)), List.copyOf(decoder.memory().tenantBytes().values()));

            // Evicted and loaded again, alice computes exactly what she did.
            assertArrayEquals(aliceAlone, logits(decoder, "alice"));
        }
    }

    @Test
    void aTenantThatDoesNotFitFailsItsOwnSequencesWhileOthersGoOn() {
        try (Decoder decoder = openWithBoth(roomForOne())) {
            try (Sequence aliceSequence = decoder.newSequence("alice");
                 Sequence shakespeareSequence = decoder.newSequence("shakespeare");
                 Sequence baseSequence = decoder.newSequence("base")) {
                // Alice has an open sequence: she cannot be evicted, and both do not fit.
                Decoder.StepResult first = decoder.step(List.of(aliceSequence), List.of(prompt()), List.of(Decoder.TokenSampling.greedy()));
                assertNull(first.failures().getFirst());
                Decoder.StepResult second = decoder.step(List.of(shakespeareSequence, baseSequence, aliceSequence),
                        List.of(prompt(), prompt(), new int[]{first.tokens()[0]}),
                        List.of(Decoder.TokenSampling.greedy(), Decoder.TokenSampling.greedy(), Decoder.TokenSampling.greedy()));
                BitDeltaException refused = second.failures().get(0);
                assertNotNull(refused, "shakespeare does not fit beside alice");
                assertTrue(refused.getMessage().contains("shakespeare") && refused.getMessage().contains("budget"), refused.getMessage());
                assertEquals(-1, second.tokens()[0]);
                assertNull(second.failures().get(1));
                assertNull(second.failures().get(2));
                assertTrue(second.tokens()[1] >= 0 && second.tokens()[2] >= 0, "base and alice went on");
                assertEquals(0, shakespeareSequence.length(), "the refused sequence is left as it was");
            }
            // Once alice's sequence is closed she is idle, and shakespeare fits by evicting her.
            logits(decoder, "shakespeare");
            assertEquals(-1, slot(decoder, "alice"));
        }
    }

    @Test
    void aRemovedTenantFreesItsDeviceMemoryAndItsOpenSequencesGetNoMoreResults() {
        try (Decoder decoder = openWithBoth(Long.MAX_VALUE)) {
            logits(decoder, "alice");
            logits(decoder, "shakespeare");
            assertEquals(2, decoder.memory().tenantBytes().size());
            try (Sequence aliceSequence = decoder.newSequence("alice"); Sequence other = decoder.newSequence("shakespeare")) {
                decoder.removeTenant("alice");
                assertEquals(1, decoder.memory().tenantBytes().size(), "alice's slot freed at once");
                Decoder.StepResult result = decoder.step(List.of(aliceSequence, other), List.of(prompt(), prompt()),
                        List.of(Decoder.TokenSampling.greedy(), Decoder.TokenSampling.greedy()));
                assertTrue(result.failures().get(0).getMessage().contains("removed"));
                assertNull(result.failures().get(1));
            }
            BitDeltaException unknown = assertThrows(BitDeltaException.class, () -> decoder.newSequence("alice"));
            assertTrue(unknown.getMessage().contains("not loaded"));
        }
    }

    @Test
    void sequencesOfDifferentLengthsShareStepsJoinAndLeaveAndReturnTheirBlocks() {
        try (Decoder decoder = open(Long.MAX_VALUE)) {
            decoder.addTenant("alice", "alice.bitdelta", alice);
            Sequence longOne = decoder.newSequence("alice");
            Sequence shortOne = decoder.newSequence("base");
            decoder.forward(List.of(longOne), List.of(new int[40]), false); // 40 tokens: 3 blocks of 16
            assertEquals(3, longOne.blocks());
            assertEquals(3, decoder.kvBlockUse()[0]);
            for (int step = 0; step < 10; step++) {
                List<Sequence> batch = step < 5 ? List.of(longOne, shortOne) : List.of(longOne);
                List<int[]> tokens = step < 5 ? List.of(new int[]{5}, new int[]{7, 8}) : List.of(new int[]{5});
                decoder.forward(batch, tokens, false);
                if (step == 4) {
                    shortOne.close(); // leaves between steps
                }
            }
            assertEquals(50, longOne.length());
            assertEquals(4, decoder.kvBlockUse()[0], "only the long sequence's 4 blocks are in use");
            longOne.close();
            assertEquals(0, decoder.kvBlockUse()[0]);

            // A sequence that would not fit in the cache fails clearly and leaves the cache as it was.
            try (Sequence huge = decoder.newSequence("base"); Sequence huge2 = decoder.newSequence("base")) {
                decoder.forward(List.of(huge), List.of(new int[200]), false);
                BitDeltaException full = assertThrows(BitDeltaException.class,
                        () -> decoder.forward(List.of(huge2), List.of(new int[200]), false));
                assertTrue(full.getMessage().contains("KV cache is full"), full.getMessage());
                assertEquals(13, decoder.kvBlockUse()[0]);
            }
            assertEquals(0, decoder.kvBlockUse()[0]);
        }
    }

    private static int slot(Decoder decoder, String name) {
        return decoder.tenantMemory().stream().filter(tenant -> tenant.name().equals(name)).findFirst().orElseThrow().slot();
    }

    private static float[] logits(Decoder decoder, String tenant) {
        try (Sequence sequence = decoder.newSequence(tenant)) {
            return decoder.forward(List.of(sequence), List.of(prompt()), false).getFirst();
        }
    }
}
