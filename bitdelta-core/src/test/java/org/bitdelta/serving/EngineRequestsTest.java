package org.bitdelta.serving;

import org.bitdelta.BitDeltaException;
import org.bitdelta.inference.Tokenizer;
import org.bitdelta.testing.EngineHold;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import java.util.stream.Collectors;

import static org.bitdelta.serving.ServingFixtures.BASE;
import static org.bitdelta.serving.ServingFixtures.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One request's life on the base model: validation, streaming, stop conditions, cancellation, the queue bound and
 * closing. The greedy continuation of "Once upon a time" on stories260K is ", there was a little girl named Lily.
 * She loved to play outside in the park." (tokens 432 383 286 261 376 298 315 ...).
 */
@Timeout(120)
class EngineRequestsTest {
    private static final int[] GREEDY_FROM_BOS = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298};
    private static Engine engine;
    private static Tokenizer tokenizer;

    @BeforeAll
    static void open() {
        engine = Engine.open(BASE);
        tokenizer = Tokenizer.load(BASE);
    }

    @AfterAll
    static void close() {
        engine.close();
        tokenizer.close();
    }

    private static void assertRefused(String field, Supplier<?> action, String... parts) {
        InvalidRequestException error = assertThrows(InvalidRequestException.class, action::get);
        assertEquals(field, error.field(), error.getMessage());
        for (String part : parts) {
            assertTrue(error.getMessage().contains(part), "message should name '" + part + "': " + error.getMessage());
        }
    }

    @Test
    void badRequestsAreRefusedNamingTheFieldAndTheLimit() {
        Request ok = Request.text("base", "Once upon a time");
        assertRefused("max_tokens", () -> ok.maxTokens(0), "max_tokens", "at least 1", "0");
        assertRefused("temperature", () -> ok.temperature(-0.1), "temperature", "[0, 2.0]", "-0.1");
        assertRefused("temperature", () -> ok.temperature(2.5), "temperature", "2.5");
        assertRefused("temperature", () -> ok.temperature(Double.NaN), "temperature", "NaN");
        assertRefused("top_p", () -> ok.topP(0), "top_p", "(0, 1]");
        assertRefused("top_p", () -> ok.topP(1.01), "top_p", "1.01");
        assertRefused("top_k", () -> ok.topK(-1), "top_k", ">= 0");
        assertRefused("stop", () -> ok.stop("a", ""), "stop string is empty");
        assertRefused("stop_token_ids", () -> ok.stopTokenIds(-2), "-2");
        assertRefused("prompt", () -> Request.text("base", ""), "empty");
        assertRefused("prompt", () -> Request.tokens("base"), "no tokens");
        assertRefused("messages", () -> Request.chat("base", List.of()), "at least one message");
        assertRefused("tenant", () -> Request.text(" ", "x"), "blank");

        long submitted = engine.stats().requestsSubmitted();
        assertRefused("tenant", () -> engine.submit(Request.text("bob", "Hi")), "'bob'", "not loaded", "base", "stories260K");
        assertRefused("prompt", () -> engine.submit(Request.tokens("base", 1, 512)), "token id 512", "[0, 512)");
        assertRefused("stop_token_ids", () -> engine.submit(ok.stopTokenIds(600)), "600", "vocabulary");
        int[] full = new int[engine.contextLength()];
        Arrays.fill(full, 300);
        assertRefused("prompt", () -> engine.submit(Request.tokens("base", full)), "512 tokens", "context is 512",
                "max_position_embeddings", "no room");
        assertEquals(submitted, engine.stats().requestsSubmitted(), "nothing refused was queued");
    }

    @Test
    void optionsThatCannotWorkAreRefusedWhenTheEngineOpens() {
        IllegalArgumentException error = assertThrows(IllegalArgumentException.class,
                () -> Engine.open(BASE, EngineOptions.defaults().maxRunning(100).maxRowsPerStep(64)));
        assertTrue(error.getMessage().contains("maxRunning (100)") && error.getMessage().contains("maxRowsPerStep (64)"), error.getMessage());
        assertThrows(IllegalArgumentException.class, () -> EngineOptions.defaults().prefillChunkTokens(0));
        assertThrows(IllegalArgumentException.class, () -> EngineOptions.defaults().baseAlias(" "));
    }

    @Test
    void aPromptAndMaxTokensBeyondTheKvCacheAreRefused() {
        try (Engine small = Engine.open(BASE, EngineOptions.defaults().kvCacheTokens(48).kvBlockSize(16))) {
            assertRefused("max_tokens", () -> small.submit(Request.tokens("base", 1, 403).maxTokens(60)), "(2 tokens)", "max_tokens 60",
                    "64 tokens of KV cache", "(48 tokens", "kvCacheTokens");
            assertEquals(FinishReason.LENGTH, await(small.submit(Request.tokens("base", 1, 403).maxTokens(30))).finishReason());
        }
    }

    @Test
    void maxTokensBeyondTheContextIsClampedToItWithFinishReasonLength() {
        int context = engine.contextLength();
        int[] prompt = new int[context - 3];
        Arrays.fill(prompt, 300);
        prompt[0] = 1;
        for (Request request : List.of(Request.tokens("base", prompt).maxTokens(50), Request.tokens("base", prompt))) {
            CompletionResult result = await(engine.submit(request));
            assertEquals(FinishReason.LENGTH, result.finishReason(), request.toString());
            assertEquals(3, result.tokens().length, "prompt + completion fill the context of " + context + " exactly");
            assertEquals("context length " + context, result.finishDetail());
            assertEquals(new Usage(context - 3, 3), result.usage());
        }
        CompletionResult limited = await(engine.submit(Request.tokens("base", prompt).maxTokens(2)));
        assertEquals("max_tokens 2", limited.finishDetail());
    }

    @Test
    void greedyTextStreamsPiecesThatAddUpToTheResult() {
        Completion completion = engine.submit(Request.text("base", "Once upon a time").maxTokens(11));
        List<Piece> pieces = completion.stream().toList();
        CompletionResult result = completion.result();
        assertEquals(", there was a little girl named Lily.", result.text());
        assertEquals(result.text(), pieces.stream().map(Piece::text).collect(Collectors.joining()));
        assertArrayEquals(result.tokens(), pieces.stream().flatMapToInt(piece -> Arrays.stream(piece.tokens())).toArray());
        assertEquals(11, pieces.size(), "one piece per token, the last one carrying the result");
        assertTrue(pieces.getLast().last() && pieces.stream().filter(Piece::last).count() == 1);
        assertEquals(FinishReason.LENGTH, pieces.getLast().finishReason());
        assertEquals("max_tokens 11", result.finishDetail());
        assertEquals(new Usage(tokenizer.encode("Once upon a time").length, 11), result.usage());
        assertEquals(completion.promptTokens(), result.usage().promptTokens());
        assertNull(completion.poll(), "every piece was taken");
        // Timings: submitted <= scheduled <= each token, in order, <= finished.
        Timings timings = result.timings();
        long[] tokens = timings.tokenNanos();
        assertEquals(11, tokens.length);
        assertTrue(timings.scheduledNanos() >= timings.submittedNanos());
        assertTrue(tokens[0] >= timings.scheduledNanos());
        for (int i = 1; i < tokens.length; i++) {
            assertTrue(tokens[i] > tokens[i - 1], "token times increase");
        }
        assertTrue(timings.finishedNanos() >= tokens[10]);
        assertEquals(Duration.ofNanos(tokens[0] - timings.submittedNanos()), timings.timeToFirstToken().orElseThrow());
        assertEquals(10, timings.interTokenLatencies().length);
    }

    @Test
    void theBaseAnswersToItsFolderNameAndTokenPromptsAreUsedAsTheyAre() {
        assertEquals(List.of("base", "stories260K"), engine.tenants());
        assertEquals("stories260K", engine.baseAlias());
        CompletionResult viaAlias = await(engine.submit(Request.tokens("stories260K", 1).maxTokens(10)));
        assertArrayEquals(GREEDY_FROM_BOS, viaAlias.tokens());
        assertEquals("stories260K", viaAlias.tenant());
        try (Engine noAlias = Engine.open(BASE, EngineOptions.defaults().baseAlias(null))) {
            assertEquals(List.of("base"), noAlias.tenants());
            assertRefused("tenant", () -> noAlias.submit(Request.tokens("stories260K", 1)), "'stories260K'", "not loaded");
        }
    }

    @Test
    void aStopStringAcrossPiecesIsCutAndNeverStreamed() {
        // ", there was a little girl": "little girl" spans the pieces " little", " g", "ir", "l".
        Completion completion = engine.submit(Request.text("base", "Once upon a time").maxTokens(40).stop("little girl", "zzz"));
        List<Piece> pieces = completion.stream().toList();
        CompletionResult result = completion.result();
        assertEquals(", there was a ", result.text());
        assertEquals(result.text(), pieces.stream().map(Piece::text).collect(Collectors.joining()));
        for (Piece piece : pieces) {
            assertFalse(piece.text().contains("litt"), "held back until known: " + pieces.stream().map(Piece::text).toList());
        }
        assertEquals(FinishReason.STOP, result.finishReason());
        assertEquals("little girl", result.stopString());
        assertEquals(-1, result.stopToken());
        assertEquals("stop string \"little girl\"", result.finishDetail());
        assertEquals(8, result.tokens().length, "up to the token that completed the stop string");
        // Held-back text that is not a stop string after all is released: "a littl" could start "a little boy".
        CompletionResult released = await(engine.submit(Request.text("base", "Once upon a time").maxTokens(11).stop("a little boy")));
        assertEquals(", there was a little girl named Lily.", released.text());
        assertEquals(FinishReason.LENGTH, released.finishReason());
    }

    @Test
    void aStopTokenEndsTheCompletionAndIsKeptInTheTokensNotTheText() {
        CompletionResult result = await(engine.submit(Request.text("base", "Once upon a time").maxTokens(40).stopTokenIds(376)));
        assertEquals(FinishReason.STOP, result.finishReason());
        assertEquals(376, result.stopToken());
        assertEquals("stop token 376", result.finishDetail());
        assertArrayEquals(new int[]{432, 383, 286, 261, 376}, result.tokens());
        assertEquals(", there was a", result.text());
    }

    @Test
    void endOfSequenceTokensComeFromGenerationConfigElseFromConfig(@TempDir Path folder) throws IOException {
        for (String file : List.of("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")) {
            Files.copy(BASE.resolve(file), folder.resolve(file));
        }
        // config.json says eos 2, which the greedy sample from BOS does not reach in 30 tokens.
        try (Engine plain = Engine.open(folder)) {
            assertEquals(FinishReason.LENGTH, await(plain.submit(Request.tokens("base", 1).maxTokens(30))).finishReason());
        }
        // config.json may name several (an int or a list), as generation_config.json may.
        Path config = folder.resolve("config.json");
        String original = Files.readString(config);
        Files.writeString(config, original.replace("\"eos_token_id\": 2", "\"eos_token_id\": [2, 376]"));
        try (Engine listed = Engine.open(folder)) {
            assertEquals("eos token 376", await(listed.submit(Request.tokens("base", 1).maxTokens(30))).finishDetail());
        }
        Files.writeString(config, original);
        // generation_config.json overrides it with a list; its 376 comes 9th.
        Files.writeString(folder.resolve("generation_config.json"), "{\"bos_token_id\": 1, \"eos_token_id\": [2, 376], \"do_sample\": false}");
        try (Engine configured = Engine.open(folder)) {
            CompletionResult result = await(configured.submit(Request.tokens("base", 1).maxTokens(30)));
            assertEquals(FinishReason.STOP, result.finishReason());
            assertEquals("eos token 376", result.finishDetail());
            assertArrayEquals(Arrays.copyOf(GREEDY_FROM_BOS, 9), result.tokens(), "stops after the end token, which is kept");
            CompletionResult ignoring = await(configured.submit(Request.tokens("base", 1).maxTokens(30).ignoreEos(true)));
            assertEquals(FinishReason.LENGTH, ignoring.finishReason());
            assertEquals(30, ignoring.tokens().length);
        }
        Files.writeString(folder.resolve("generation_config.json"), "{\"eos_token_id\": 376}");
        try (Engine single = Engine.open(folder)) {
            assertEquals("eos token 376", await(single.submit(Request.tokens("base", 1).maxTokens(30))).finishDetail());
        }
        Files.writeString(folder.resolve("generation_config.json"), "{\"eos_token_id\": \"</s>\"}");
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> Engine.open(folder).close());
        assertTrue(error.getMessage().contains("generation_config.json") && error.getMessage().contains("eos_token_id"), error.getMessage());
    }

    @Test
    void aServerCanDrainPiecesOnItsOwnThreadWhenToldTheyAreThere() throws Exception {
        ExecutorService eventLoop = Executors.newSingleThreadExecutor();
        try {
            Completion completion = engine.submit(Request.text("base", "Once upon a time").maxTokens(20));
            ConcurrentLinkedQueue<Piece> drained = new ConcurrentLinkedQueue<>();
            AtomicInteger calls = new AtomicInteger();
            completion.onAvailable(() -> {
                calls.incrementAndGet();
                eventLoop.execute(() -> {
                    for (Piece piece = completion.poll(); piece != null; piece = completion.poll()) {
                        drained.add(piece);
                    }
                });
            });
            CompletionResult result = await(completion);
            eventLoop.submit(() -> { }).get(); // the last drain has run
            List<Piece> pieces = new ArrayList<>(drained);
            assertEquals(20, pieces.size());
            assertTrue(pieces.getLast().last());
            assertEquals(result.text(), pieces.stream().map(Piece::text).collect(Collectors.joining()));
            assertTrue(calls.get() >= 1);
        } finally {
            eventLoop.shutdown();
        }
    }

    @Test
    void cancellingFreesTheBatchSlotAndKvBlocksAtTheNextStep() throws InterruptedException {
        Completion completion = engine.submit(Request.text("base", "Once upon a time").maxTokens(400).ignoreEos(true));
        List<Piece> first;
        try (EngineHold hold = new EngineHold(completion, 3)) { // the engine waits between steps while the test looks and cancels
            hold.awaitHeld();
            first = hold.pieces().subList(0, 3);
            EngineStats running = engine.stats();
            assertEquals(1, running.running());
            assertTrue(running.kvBlocksUsed() > 0, "its KV cache holds blocks: " + running);
            assertEquals(1, running.tenants().getFirst().running());
            completion.cancel();
        }
        CompletionResult result = await(completion);
        EngineStats after = engine.stats();
        assertEquals(0, after.running(), after.toString());
        assertEquals(0, after.kvBlocksUsed(), "its blocks were freed: " + after);
        assertEquals(FinishReason.CANCELLED, result.finishReason());
        assertTrue(result.tokens().length >= 3 && result.tokens().length < 400, "tokens so far: " + result.tokens().length);
        assertArrayEquals(Arrays.copyOf(result.tokens(), 3), first.stream().flatMapToInt(piece -> Arrays.stream(piece.tokens())).toArray());
        completion.cancel(); // no effect once ended
        assertTrue(completion.isDone());
    }

    @Test
    void aFullWaitingQueueRefusesWithEngineBusyAndWaitingRequestsCanBeCancelled() throws InterruptedException {
        try (Engine narrow = Engine.open(BASE, EngineOptions.defaults().maxRunning(1).maxWaiting(2))) {
            Completion running = narrow.submit(Request.tokens("base", 1).maxTokens(400).ignoreEos(true));
            Completion second;
            Completion third;
            // Held once it runs (the queue is empty again), so that it still runs while the queue fills and is looked at.
            try (EngineHold hold = new EngineHold(running, 1)) {
                hold.awaitHeld();
                second = narrow.submit(Request.tokens("base", 1).maxTokens(5));
                third = narrow.submit(Request.tokens("base", 1).maxTokens(5));
                EngineBusyException busy = assertThrows(EngineBusyException.class, () -> narrow.submit(Request.tokens("base", 1).maxTokens(5)));
                assertTrue(busy.getMessage().contains("2 requests are waiting") && busy.getMessage().contains("maxWaiting"), busy.getMessage());
                EngineStats stats = narrow.stats();
                assertEquals(1, stats.running());
                assertEquals(2, stats.waiting());
                assertEquals(3, stats.requestsSubmitted(), "the refused one was not counted");
                third.cancel();
                running.cancel();
            }
            assertEquals(FinishReason.CANCELLED, await(third).finishReason());
            assertEquals(-1, await(third).timings().scheduledNanos(), "it never ran");
            assertEquals(FinishReason.CANCELLED, await(running).finishReason());
            CompletionResult secondResult = await(second);
            assertEquals(FinishReason.LENGTH, secondResult.finishReason(), "the waiting one ran once a slot was free");
            assertArrayEquals(Arrays.copyOf(GREEDY_FROM_BOS, 5), secondResult.tokens());
            assertEquals(1, narrow.stats().requestsFinished().get(FinishReason.LENGTH));
            assertEquals(2, narrow.stats().requestsFinished().get(FinishReason.CANCELLED));
        }
    }

    @Test
    void closingEndsEveryRequestAndRefusesNewOnes() throws InterruptedException {
        Engine closing = Engine.open(BASE, EngineOptions.defaults().maxRunning(1));
        Completion running = closing.submit(Request.tokens("base", 1).maxTokens(400).ignoreEos(true));
        Completion waiting = closing.submit(Request.tokens("base", 1).maxTokens(400));
        // Closed while the engine is held mid-run: close() waits for the engine thread, so it runs on a thread of its own.
        Thread closer;
        try (EngineHold hold = new EngineHold(running, 1)) {
            hold.awaitHeld();
            closer = Thread.ofPlatform().name("closer").start(closing::close);
            while (!closing.stats().closed()) {
                Thread.sleep(1);
            }
        }
        closer.join(60_000);
        assertFalse(closer.isAlive(), "close() returned");
        for (Completion completion : List.of(running, waiting)) {
            CompletionResult result = await(completion);
            assertEquals(FinishReason.CANCELLED, result.finishReason());
            assertEquals("the engine was closed", result.finishDetail());
        }
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> closing.submit(Request.tokens("base", 1)));
        assertTrue(error.getMessage().contains("closed"), error.getMessage());
        assertTrue(closing.stats().closed());
        closing.close(); // idempotent
    }

    @Test
    void chatMessagesWithoutATemplateAreJoinedByNewlinesAndTokenizedLikeText(@TempDir Path folder) throws IOException {
        List<ChatMessage> messages = List.of(ChatMessage.system("Once upon a time"), ChatMessage.user("there was a dog"));
        Completion chat = engine.submit(Request.chat("base", messages).maxTokens(8));
        CompletionResult text = await(engine.submit(Request.text("base", "Once upon a time\nthere was a dog").maxTokens(8)));
        assertEquals(tokenizer.encode("Once upon a time\nthere was a dog").length, chat.promptTokens());
        assertArrayEquals(text.tokens(), await(chat).tokens());
        // EngineOptions.chatTemplate overrides: its text is tokenized without special tokens (the template writes BOS).
        Path template = Files.writeString(folder.resolve("chat.jinja"),
                "{{ bos_token }}{% for m in messages %}{{ m['content'] | upper }}{% if not loop.last %} | {% endif %}{% endfor %}");
        try (Engine templated = Engine.open(BASE, EngineOptions.defaults().chatTemplate(template))) {
            Completion completion = templated.submit(Request.chat("base", messages).maxTokens(4));
            assertEquals(tokenizer.encodeWithoutSpecialTokens("<s>ONCE UPON A TIME | THERE WAS A DOG").length, completion.promptTokens());
            assertEquals(tokenizer.encodeWithoutSpecialTokens("<s>ONCE UPON A TIME | THERE WAS A DOG")[0], 1, "<s> is BOS, once");
            assertEquals(FinishReason.LENGTH, await(completion).finishReason());
        }
        BitDeltaException missing = assertThrows(BitDeltaException.class,
                () -> Engine.open(BASE, EngineOptions.defaults().chatTemplate(folder.resolve("none.jinja"))));
        assertTrue(missing.getMessage().contains("none.jinja"), missing.getMessage());
    }
}
