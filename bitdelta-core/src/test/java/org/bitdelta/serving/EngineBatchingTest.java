package org.bitdelta.serving;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.EngineHold;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.bitdelta.serving.ServingFixtures.ALICE;
import static org.bitdelta.serving.ServingFixtures.BASE;
import static org.bitdelta.serving.ServingFixtures.SHAKESPEARE;
import static org.bitdelta.serving.ServingFixtures.alone;
import static org.bitdelta.serving.ServingFixtures.await;
import static org.bitdelta.serving.ServingFixtures.concurrently;
import static org.bitdelta.serving.ServingFixtures.eachAlone;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Continuous batching does not change answers: a request gets the same tokens alone, joining a running batch,
 * among many concurrent requests of other tenants, with its prompt prefilled in chunks of any size, and after
 * being preempted and recomputed. Greedy and seeded sampling alike (sampling draws depend on the seed and the
 * token index only). Every random choice comes from the printed seed.
 */
@Timeout(180)
class EngineBatchingTest {
    private static final long SEED = Long.getLong("bitdelta.test.seed", 20261207L);
    private static DeltaModel alice;
    private static DeltaModel shakespeare;
    private static DeltaModel alicePerRow;
    private static Engine engine;

    @BeforeAll
    static void open() {
        System.out.println("EngineBatchingTest seed " + SEED);
        alice = BitDelta.compress(BASE, ALICE);
        shakespeare = BitDelta.compress(BASE, SHAKESPEARE);
        alicePerRow = BitDelta.compress(BASE, ALICE, CompressOptions.defaults().perRowScales(true));
        engine = Engine.open(BASE);
        engine.addTenant("alice", alice);
        engine.addTenant("shakespeare", shakespeare);
        engine.addTenant("alice-per-row", alicePerRow);
    }

    @AfterAll
    static void close() {
        engine.close();
        alice.close();
        shakespeare.close();
        alicePerRow.close();
    }

    private static final String[] PROMPTS = {"Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a big"};
    private static final String[] TENANTS = {"base", "alice", "shakespeare", "alice-per-row"};

    /** Greedy and sampled requests over the three tenants, drawn from {@code seed}. */
    private static List<Request> requests(long seed, int count) {
        SplittableRandom random = new SplittableRandom(seed);
        List<Request> requests = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            Request request = Request.text(TENANTS[i % TENANTS.length], PROMPTS[random.nextInt(PROMPTS.length)])
                    .maxTokens(8 + random.nextInt(24));
            if (i % 2 == 1) {
                request = request.temperature(0.3 + random.nextDouble()).topP(0.5 + random.nextDouble() / 2)
                        .topK(random.nextInt(3) * 20).seed(random.nextLong());
            }
            requests.add(request);
        }
        return requests;
    }

    private static void assertSameAnswer(CompletionResult expected, CompletionResult actual, String what) {
        assertArrayEquals(expected.tokens(), actual.tokens(), what + " (seed " + SEED + ")");
        assertEquals(expected.finishReason(), actual.finishReason(), what);
        assertEquals(expected.text(), actual.text(), what);
    }

    @Test
    void requestsJoiningARunningBatchGetTheTokensTheyGetAlone() throws InterruptedException {
        Request first = Request.text("base", "Once upon a time").maxTokens(200).ignoreEos(true);
        Request second = Request.text("alice", "The little dog").maxTokens(30);
        Request third = Request.text("shakespeare", "Lily and Tom").maxTokens(30).temperature(0.9).seed(SEED);
        Request fourth = Request.text("alice", "One day").maxTokens(20).temperature(1.2).topK(40).topP(0.9).seed(SEED + 1);
        List<CompletionResult> expected = eachAlone(engine, List.of(first, second, third, fourth));
        // The engine is held while the others arrive, so they join mid-run whatever the test thread's pace.
        Completion running = engine.submit(first);
        Completion joining;
        Completion sampled;
        Completion late;
        EngineHold joined;
        try (EngineHold hold = new EngineHold(running, 5)) {
            hold.awaitHeld();
            joining = engine.submit(second);
            sampled = engine.submit(third);
            joined = new EngineHold(joining, 2); // made while held: it cannot miss the second's second piece
        }
        try (joined) {
            joined.awaitHeld();
            late = engine.submit(fourth);
        }
        List<CompletionResult> actual = List.of(await(running), await(joining), await(sampled), await(late));
        for (int i = 0; i < actual.size(); i++) {
            assertSameAnswer(expected.get(i), actual.get(i), "request " + i);
        }
        // They did share steps: the second's tokens came while the first was still decoding.
        long[] firstTokens = actual.get(0).timings().tokenNanos();
        long[] secondTokens = actual.get(1).timings().tokenNanos();
        assertTrue(secondTokens[0] > firstTokens[4] && secondTokens[0] < firstTokens[firstTokens.length - 1],
                "the second joined the first mid-run");
        assertFalse(Arrays.equals(expected.get(1).tokens(), alone(engine, second.temperature(1).seed(SEED)).tokens()),
                "sampling does change the answer, so the equalities above are not vacuous");
        assertFalse(Arrays.equals(expected.get(1).tokens(), alone(engine, Request.text("base", "The little dog").maxTokens(30)).tokens()),
                "alice continues differently from the base");
    }

    /** As the server's load test: 64 concurrent streaming requests over 4 tenants, each equal to itself alone. */
    @Test
    void manyConcurrentRequestsOfSeveralTenantsGetTheirAloneAnswers() throws Exception {
        List<Request> requests = requests(SEED, 64);
        List<CompletionResult> expected = eachAlone(engine, requests);
        List<CompletionResult> results = concurrently(engine, requests);
        int widestOverlap = 0;
        for (int i = 0; i < requests.size(); i++) {
            CompletionResult result = results.get(i);
            assertSameAnswer(expected.get(i), result, "request " + i + " " + requests.get(i));
            int overlapping = 0;
            for (CompletionResult o : results) {
                if (o.timings().scheduledNanos() < result.timings().finishedNanos() && o.timings().finishedNanos() > result.timings().scheduledNanos()) {
                    overlapping++;
                }
            }
            widestOverlap = Math.max(widestOverlap, overlapping);
        }
        assertTrue(widestOverlap > 16, "requests ran in one batch (" + widestOverlap + " overlapped)");
    }

    @Test
    void chunkedPrefillGivesTheSameTokensWhateverTheChunkAndKeepsOthersDecoding() throws InterruptedException {
        // A long prompt: a few sentences, about 150 tokens.
        String longPrompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                + "One day, she saw a big, red ball. She wanted to play with it. She asked her mom if she could have it. "
                + "Her mom said yes, and Lily was very happy. She played with the ball all day long. The sun was warm and "
                + "the birds were singing. Lily and her friend Tom ran and laughed until it was time to go home.";
        Request longRequest = Request.text("alice", longPrompt).maxTokens(16);
        CompletionResult expected = alone(engine, longRequest);
        assertTrue(await(engine.submit(longRequest)).usage().promptTokens() > 100);
        for (int chunk : new int[]{3, 64}) {
            try (Engine chunked = Engine.open(BASE, EngineOptions.defaults().prefillChunkTokens(chunk))) {
                chunked.addTenant("alice", alice);
                Completion decoding = chunked.submit(Request.text("base", "The little dog").maxTokens(200).ignoreEos(true));
                Completion prefilling;
                try (EngineHold hold = new EngineHold(decoding, 2)) {
                    hold.awaitHeld();
                    prefilling = chunked.submit(longRequest);
                }
                CompletionResult result = await(prefilling);
                assertSameAnswer(expected, result, "prefill in chunks of " + chunk);
                // Tokens of the decoding request kept coming while the long prompt was prefilled.
                decoding.cancel();
                long[] decodeTimes = await(decoding).timings().tokenNanos();
                long during = Arrays.stream(decodeTimes)
                        .filter(time -> time > result.timings().scheduledNanos() && time < result.timings().tokenNanos()[0]).count();
                int steps = (result.usage().promptTokens() + chunk - 1) / chunk;
                assertTrue(during >= Math.min(steps - 1, 150) - 1, "chunk " + chunk + ": " + during + " decode tokens during " + steps
                        + " prefill steps");
            }
        }
    }

    @Test
    void preemptedRequestsAreRecomputedToTheSameAnswer() {
        // 8 blocks of 16 tokens: six requests of up to ~45 tokens (3 blocks each) cannot all grow at once.
        List<Request> requests = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            Request request = Request.text(TENANTS[i % 3], PROMPTS[i % PROMPTS.length]).maxTokens(40).ignoreEos(true);
            requests.add(i % 2 == 0 ? request : request.temperature(0.8).seed(SEED + i));
        }
        List<CompletionResult> expected = eachAlone(engine, requests);
        try (Engine tight = Engine.open(BASE, EngineOptions.defaults().kvCacheTokens(128).kvBlockSize(16))) {
            tight.addTenant("alice", alice);
            tight.addTenant("shakespeare", shakespeare);
            List<Completion> completions = new ArrayList<>();
            for (Request request : requests) {
                completions.add(tight.submit(request));
            }
            for (int i = 0; i < requests.size(); i++) {
                assertSameAnswer(expected.get(i), await(completions.get(i)), "request " + i + " with a tight KV cache");
            }
            EngineStats stats = tight.stats();
            assertTrue(stats.preemptions() > 0, "the cache was too small for all at once: " + stats);
            assertEquals(0, stats.kvBlocksUsed());
            assertEquals(8, stats.kvBlocksTotal());
            assertEquals(6, stats.requestsFinished().get(FinishReason.LENGTH));
        }
    }
}
