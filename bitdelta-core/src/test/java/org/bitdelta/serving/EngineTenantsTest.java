package org.bitdelta.serving;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.cpu.CpuDecoderDevice;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.EngineHold;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.bitdelta.serving.ServingFixtures.ALICE;
import static org.bitdelta.serving.ServingFixtures.BASE;
import static org.bitdelta.serving.ServingFixtures.SHAKESPEARE;
import static org.bitdelta.serving.ServingFixtures.alone;
import static org.bitdelta.serving.ServingFixtures.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Tenants come and go while requests run: a failure of one tenant (removed, over the device budget) or of the
 * decoder ends the requests it concerns with an error, and the others go on as if nothing happened.
 */
@Timeout(120)
class EngineTenantsTest {
    private static DeltaModel alice;
    private static DeltaModel shakespeare;

    @BeforeAll
    static void compress() {
        alice = BitDelta.compress(BASE, ALICE);
        shakespeare = BitDelta.compress(BASE, SHAKESPEARE);
    }

    @AfterAll
    static void close() {
        alice.close();
        shakespeare.close();
    }

    private static void assertMessage(Throwable error, String... parts) {
        assertNames("message", error.getMessage(), parts);
    }

    private static void assertMessage(CompletionResult result, String... parts) {
        assertNames("error", result.finishDetail(), parts);
    }

    private static void assertNames(String what, String text, String... parts) {
        for (String part : parts) {
            assertTrue(text.contains(part), what + " should name '" + part + "': " + text);
        }
    }

    @Test
    void removingATenantEndsItsRunningAndWaitingRequestsWithAnErrorAndOthersComplete() throws InterruptedException {
        try (Engine engine = Engine.open(BASE, EngineOptions.defaults().maxRunning(3))) {
            engine.addTenant("alice", alice);
            engine.addTenant("shakespeare", shakespeare);
            Request base = Request.text("base", "Once upon a time").maxTokens(40).ignoreEos(true);
            Request other = Request.text("alice", "The little dog").maxTokens(40).ignoreEos(true);
            CompletionResult baseAlone = alone(engine, base);
            CompletionResult shakespeareAlone = alone(engine, Request.text("shakespeare", "Lily").maxTokens(5));
            CompletionResult aliceAlone = alone(engine, other);
            // doomed (400 tokens) runs first; the engine is held at its first piece while the others arrive, so base
            // and alice join it in the next step and the 4th waits (maxRunning 3), whatever the test thread's pace.
            Completion doomed = engine.submit(Request.text("shakespeare", "Lily").maxTokens(400).ignoreEos(true));
            Completion baseRunning;
            Completion aliceRunning;
            Completion doomedWaiting;
            EngineHold atTen;
            try (EngineHold first = new EngineHold(doomed, 1)) {
                first.awaitHeld();
                baseRunning = engine.submit(base);
                aliceRunning = engine.submit(other);
                doomedWaiting = engine.submit(Request.text("shakespeare", "Tom").maxTokens(10)); // a 4th: waits
                atTen = first.then(10);
            }
            // Held again once doomed has 10 tokens: base and alice (40 each) are still running, so the 4th still waits.
            try (atTen) {
                assertTrue(atTen.awaitHeld() >= 10);
                EngineStats stats = engine.stats();
                assertEquals(1, stats.tenants().get(2).running(), stats.tenants().toString());
                assertEquals(1, stats.waiting(), "the 4th waits");
                assertEquals(3, stats.running());
                engine.removeTenant("shakespeare");
            }
            CompletionResult removed = await(doomed);
            assertEquals(FinishReason.ERROR, removed.finishReason());
            assertMessage(removed, "'shakespeare'", "removed");
            assertTrue(removed.tokens().length >= 10, "its tokens until then are kept");
            assertEquals(removed.finishDetail(), removed.error());
            CompletionResult neverRan = await(doomedWaiting);
            assertEquals(FinishReason.ERROR, neverRan.finishReason());
            assertMessage(neverRan, "'shakespeare'", "not loaded");
            assertArrayEquals(baseAlone.tokens(), await(baseRunning).tokens(), "base undisturbed");
            assertArrayEquals(aliceAlone.tokens(), await(aliceRunning).tokens(), "alice undisturbed");
            assertEquals(List.of("base", "stories260K", "alice"), engine.tenants());
            // Added again under another name, it serves as before.
            engine.addTenant("shakespeare-again", shakespeare);
            assertArrayEquals(shakespeareAlone.tokens(), await(engine.submit(Request.text("shakespeare-again", "Lily").maxTokens(5))).tokens());
            assertEquals(0, engine.stats().running());
        }
    }

    @Test
    void aTenantThatDoesNotFitTheDeviceBudgetFailsItsRequestsAlone() throws InterruptedException {
        // Room for one of the two fine-tunes, not both: while alice runs, shakespeare cannot be loaded beside it.
        try (Engine engine = Engine.open(BASE, EngineOptions.defaults().tenantBudgetBytes(200_000))) {
            engine.addTenant("alice", alice);
            engine.addTenant("shakespeare", shakespeare);
            Completion aliceRunning = engine.submit(Request.text("alice", "Once upon a time").maxTokens(300).ignoreEos(true));
            Completion base;
            Completion refused;
            EngineHold baseEnd;
            // Held while the others arrive, and again at base's last piece: alice (300 tokens) runs throughout.
            try (EngineHold hold = new EngineHold(aliceRunning, 2)) {
                hold.awaitHeld();
                base = engine.submit(Request.text("base", "Once upon a time").maxTokens(20).ignoreEos(true));
                refused = engine.submit(Request.text("shakespeare", "Once upon a time").maxTokens(20));
                baseEnd = new EngineHold(base, 20);
            }
            CompletionResult failed = await(refused);
            assertEquals(FinishReason.ERROR, failed.finishReason());
            assertMessage(failed, "'shakespeare'", "does not fit", "budget is 200000 bytes", "alice");
            try (baseEnd) {
                baseEnd.awaitHeld();
                assertFalse(aliceRunning.isDone(), "alice went on");
                aliceRunning.cancel();
            }
            assertEquals(FinishReason.LENGTH, await(base).finishReason(), "the base went on");
            assertEquals(FinishReason.CANCELLED, await(aliceRunning).finishReason());
            // Once alice is idle it is evicted for shakespeare.
            assertEquals(FinishReason.LENGTH, await(engine.submit(Request.text("shakespeare", "Once").maxTokens(5))).finishReason());
            EngineStats stats = engine.stats();
            assertFalse(stats.tenants().get(1).resident(), "alice evicted: " + stats.tenants());
            assertTrue(stats.tenants().get(2).resident(), "shakespeare resident: " + stats.tenants());
            assertEquals(1, stats.requestsFinished().get(FinishReason.ERROR));
        }
        // A tenant larger than the whole budget is refused when added.
        try (Engine engine = Engine.open(BASE, EngineOptions.defaults().tenantBudgetBytes(1000))) {
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("alice", alice)), "alice", "1000 bytes");
            assertEquals(List.of("base", "stories260K"), engine.tenants());
        }
    }

    @Test
    void statsShowEachTenantsRequestsAndDeviceBytes() throws InterruptedException {
        try (Engine engine = Engine.open(BASE)) {
            engine.addTenant("alice", alice);
            Completion running = engine.submit(Request.text("alice", "Once").maxTokens(300).ignoreEos(true));
            try (EngineHold hold = new EngineHold(running, 2)) {
                hold.awaitHeld();
                EngineStats stats = engine.stats();
                EngineStats.TenantStats aliceStats = stats.tenants().get(1);
                assertEquals("alice", aliceStats.name());
                assertEquals(1, aliceStats.running());
                assertTrue(aliceStats.resident());
                assertTrue(aliceStats.deviceBytes() > 0 && aliceStats.bytes() > 0, aliceStats.toString());
                assertEquals(aliceStats.deviceBytes(), stats.memory().tenantTotal());
                assertEquals(1, stats.lastStepSequences());
                assertEquals(1, stats.lastStepRows());
                running.cancel();
            }
            assertEquals(FinishReason.CANCELLED, await(running).finishReason());
        }
    }

    @Test
    void refusedTenantsChangeNothing(@TempDir Path folder) {
        try (Engine engine = Engine.open(BASE)) {
            engine.addTenant("alice", alice);
            List<String> before = engine.tenants();
            // Same shapes, other base: only the fingerprint tells.
            try (DeltaModel foreign = BitDelta.compress(ALICE, SHAKESPEARE)) {
                assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("foreign", foreign)), "foreign", "another base");
            }
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("alice", shakespeare)), "'alice'", "already loaded");
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("base", shakespeare)), "'base'");
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("stories260K", shakespeare)), "'stories260K'", "alias");
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.addTenant("missing", folder.resolve("missing.bitdelta"))), "missing.bitdelta");
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.removeTenant("bob")), "'bob'", "not loaded");
            assertMessage(assertThrows(BitDeltaException.class, () -> engine.removeTenant("stories260K")), "base model", "cannot be removed");
            assertEquals(before, engine.tenants());
            assertEquals(FinishReason.LENGTH, await(engine.submit(Request.text("alice", "Hi").maxTokens(3))).finishReason());
        }
    }

    @Test
    void aTenantFromAFileServesLikeTheDeltaItWasSavedFrom(@TempDir Path folder) {
        Path file = folder.resolve("alice.bitdelta");
        alice.save(file);
        try (Engine engine = Engine.open(BASE)) {
            engine.addTenant("alice", alice);
            engine.addTenant("alice-file", file);
            Request request = Request.text("alice", "Once upon a time").maxTokens(20);
            CompletionResult fromMemory = await(engine.submit(request));
            CompletionResult fromFile = await(engine.submit(Request.text("alice-file", "Once upon a time").maxTokens(20)));
            assertArrayEquals(fromMemory.tokens(), fromFile.tokens());
            engine.removeTenant("alice-file"); // closes the file it loaded
            assertEquals(List.of("base", "stories260K", "alice"), engine.tenants());
        }
    }

    @Test
    void tenantsAddedAndRemovedFromAnotherThreadDoNotDisturbRunningRequests() throws Exception {
        try (Engine engine = Engine.open(BASE)) {
            engine.addTenant("alice", alice);
            engine.addTenant("shakespeare", shakespeare);
            List<Request> requests = List.of(
                    Request.tokens("base", 1).maxTokens(40).ignoreEos(true),
                    Request.tokens("alice", 1).maxTokens(40).ignoreEos(true),
                    Request.tokens("shakespeare", 1).maxTokens(40).ignoreEos(true));
            List<CompletionResult> expected = requests.stream().map(request -> alone(engine, request)).toList();
            AtomicBoolean churning = new AtomicBoolean(true);
            AtomicInteger churned = new AtomicInteger();
            ExecutorService churn = Executors.newSingleThreadExecutor();
            try {
                Future<?> churner = churn.submit(() -> {
                    while (churning.get()) {
                        engine.addTenant("churn", shakespeare);
                        await(engine.submit(Request.tokens("churn", 1, 300).maxTokens(2)));
                        engine.removeTenant("churn");
                        churned.incrementAndGet();
                    }
                });
                for (int round = 0; round < 2 || churned.get() == 0; round++) { // until the other thread made a cycle too
                    assertTrue(round < 1000, "the churning thread never completed a cycle");
                    List<Completion> completions = requests.stream().map(engine::submit).toList();
                    for (int i = 0; i < requests.size(); i++) {
                        assertArrayEquals(expected.get(i).tokens(), await(completions.get(i)).tokens(), "round " + round + ", request " + i);
                    }
                }
                churning.set(false);
                churner.get(60, TimeUnit.SECONDS); // what failed on the other thread fails the test
            } finally {
                churning.set(false);
                churn.shutdown();
                assertTrue(churn.awaitTermination(60, TimeUnit.SECONDS));
            }
            assertEquals(List.of("base", "stories260K", "alice", "shakespeare"), engine.tenants());
        }
    }

    /** A backend whose products throw while {@link #failing} is set: a broken device, for the engine's sake. */
    private static final class FailingBackend implements TensorBackend {
        final VectorCpuBackend products = new VectorCpuBackend(1);
        final AtomicBoolean failing = new AtomicBoolean();

        @Override
        public String name() {
            return "failing";
        }

        @Override
        public void matmul(float[] x, int rows, Tensor weight, float[] y) {
            check();
            products.batchInvariant().matmul(x, rows, weight, y);
        }

        @Override
        public void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] y) {
            check();
            products.batchInvariant().deltaMatmul(x, rows, base, deltas, tenantOfRow, y);
        }

        private void check() {
            if (failing.get()) {
                throw new IllegalStateException("the device fell over");
            }
        }

        @Override
        public DecoderDevice openDecoder(DecoderSpec spec) {
            return new CpuDecoderDevice(spec, this, true);
        }

        @Override
        public void close() {
            products.close();
        }
    }

    @Test
    void aFailingStepEndsTheRunningRequestsWithAnErrorAndTheEngineGoesOn() throws InterruptedException {
        try (FailingBackend backend = new FailingBackend();
             Engine engine = Engine.open(BASE, EngineOptions.defaults().backend(backend))) {
            Request request = Request.tokens("base", 1).maxTokens(30);
            CompletionResult before = await(engine.submit(request));
            Completion first = engine.submit(Request.tokens("base", 1).maxTokens(400).ignoreEos(true));
            Completion second = engine.submit(Request.text("base", "Once").maxTokens(400).ignoreEos(true));
            try (EngineHold hold = new EngineHold(first, 2)) { // both still running when the device falls over
                hold.awaitHeld();
                backend.failing.set(true);
            }
            for (Completion completion : List.of(first, second)) {
                CompletionResult result = await(completion);
                assertEquals(FinishReason.ERROR, result.finishReason());
                assertMessage(result, "the decoder step failed", "the device fell over");
            }
            backend.failing.set(false);
            assertFalse(engine.stats().closed());
            assertArrayEquals(before.tokens(), await(engine.submit(request)).tokens(), "the engine serves again");
            assertEquals(0, engine.stats().kvBlocksUsed(), "the failed requests' blocks were freed");
        }
    }
}
