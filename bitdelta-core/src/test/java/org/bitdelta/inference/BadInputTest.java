package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Each bad input is a clear error, and the tenants already loaded go on exactly as before. */
class BadInputTest {
    private static DeltaModel alice;
    private static DecoderModel model;
    private static final int[] PROBE = {1, 403, 407, 261, 378, 432};
    private static float[] aliceBefore;
    private static float[] baseBefore;

    @BeforeAll
    static void load() {
        alice = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-alice"));
        model = DecoderModel.load(TestData.bundledModel("stories260K"));
        model.addTenant("alice", alice);
        aliceBefore = model.logits("alice", PROBE);
        baseBefore = model.logits(DecoderModel.BASE, PROBE);
    }

    @AfterAll
    static void close() {
        model.close();
        alice.close();
    }

    private static void assertOthersUntouched() {
        assertEquals(List.of("base", "alice"), model.tenants());
        // Not bit for bit: the Vector API may sum lanes in another order once the JIT has compiled a kernel.
        double aliceError = Norms.relativeError(model.logits("alice", PROBE), aliceBefore);
        double baseError = Norms.relativeError(model.logits(DecoderModel.BASE, PROBE), baseBefore);
        assertTrue(aliceError < 1e-6, "alice's logits unchanged: relative error " + aliceError);
        assertTrue(baseError < 1e-6, "base logits unchanged: relative error " + baseError);
    }

    private static void assertMessage(BitDeltaException error, String... parts) {
        for (String part : parts) {
            assertTrue(error.getMessage().contains(part), "message should name '" + part + "': " + error.getMessage());
        }
    }

    @Test
    void aDeltaCompressedAgainstAnotherBaseIsRefused() {
        // Same shapes, other base: only the fingerprint can tell.
        try (DeltaModel foreign = BitDelta.compress(TestData.bundledModel("stories260K-ft-alice"), TestData.bundledModel("stories260K-ft-shakespeare"))) {
            BitDeltaException error = assertThrows(BitDeltaException.class, () -> model.addTenant("foreign", foreign));
            assertMessage(error, "foreign", "another base", foreign.baseFingerprint(), model.baseFingerprint());
        }
        assertOthersUntouched();
    }

    @Test
    void aTenantThatIsNotLoadedIsAClearError() {
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> model.logits("bob", PROBE));
        assertMessage(error, "'bob'", "not loaded", "alice");
        error = assertThrows(BitDeltaException.class, () -> model.removeTenant("bob"));
        assertMessage(error, "'bob'", "not loaded");
        error = assertThrows(BitDeltaException.class, () -> model.removeTenant(DecoderModel.BASE));
        assertMessage(error, "base");
        assertOthersUntouched();
    }

    @Test
    void tenantNamesMustBeNewAndNotTheBase() {
        assertMessage(assertThrows(BitDeltaException.class, () -> model.addTenant("alice", alice)), "'alice'", "already loaded");
        assertMessage(assertThrows(BitDeltaException.class, () -> model.addTenant(DecoderModel.BASE, alice)), "'base'");
        assertMessage(assertThrows(BitDeltaException.class, () -> model.addTenant(" ", alice)), "non-blank");
        assertOthersUntouched();
    }

    @Test
    void aPromptLongerThanTheContextIsRefused() {
        int[] tooLong = new int[model.contextLength() + 1];
        Arrays.fill(tooLong, 300);
        tooLong[0] = 1;
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> model.logits("alice", tooLong));
        assertMessage(error, String.valueOf(model.contextLength() + 1), "max_position_embeddings");
        assertOthersUntouched();
    }

    @Test
    void tokenIdsOutsideTheVocabularyAreRefused() {
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> model.logits("alice", new int[]{1, model.vocabularySize()}));
        assertMessage(error, "token id " + model.vocabularySize(), "vocabulary");
        assertOthersUntouched();
    }
}
