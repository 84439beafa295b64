package org.bitdelta.serving;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.bitdelta.serving.ServingFixtures.concurrently;
import static org.bitdelta.serving.ServingFixtures.eachAlone;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine on the tinyllama pair of the acceptance data (BF16, hidden 256, a real byte-fallback tokenizer and
 * generation_config.json): 48 concurrent streaming requests, greedy and sampled, over the base and two tenants,
 * each equal to itself alone; a larger model than stories260K, where a last-bit difference between batch sizes is
 * likelier to flip a token.
 */
@Timeout(600)
class EngineAcceptanceTest {
    private static final long SEED = Long.getLong("bitdelta.test.seed", 20261208L);

    @Test
    void concurrentRequestsOnTinyLlamaEqualTheirAloneAnswers() throws Exception {
        System.out.println("EngineAcceptanceTest seed " + SEED);
        Path base = TestData.acceptance("models/tinyllama-shakespeare-base");
        Path finetuned = TestData.acceptance("models/tinyllama-shakespeare-finetuned");
        String[] prompts = {"ROMEO:\nWhat light", "KING RICHARD III:\nNow is the winter", "First Citizen:\nBefore we proceed", "JULIET:\n"};
        String[] tenants = {"base", "shakespeare", "shakespeare-per-row"};
        try (DeltaModel delta = BitDelta.compress(base, finetuned);
             DeltaModel perRow = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(true));
             Engine engine = Engine.open(base)) {
            engine.addTenant("shakespeare", delta);
            engine.addTenant("shakespeare-per-row", perRow);
            SplittableRandom random = new SplittableRandom(SEED);
            List<Request> requests = new ArrayList<>();
            for (int i = 0; i < 48; i++) {
                Request request = Request.text(tenants[i % tenants.length], prompts[random.nextInt(prompts.length)]).maxTokens(16 + random.nextInt(32));
                requests.add(i % 3 == 2 ? request.temperature(0.8).topP(0.95).seed(random.nextLong()) : request);
            }
            List<CompletionResult> expected = eachAlone(engine, requests);
            List<CompletionResult> results = concurrently(engine, requests);
            for (int i = 0; i < requests.size(); i++) {
                CompletionResult result = results.get(i);
                assertArrayEquals(expected.get(i).tokens(), result.tokens(), "request " + i + " " + requests.get(i) + " (seed " + SEED + ")");
                assertEquals(expected.get(i).text(), result.text());
                assertEquals(expected.get(i).finishReason(), result.finishReason());
            }
            assertTrue(engine.stats().steps() > 0);
        }
    }
}
