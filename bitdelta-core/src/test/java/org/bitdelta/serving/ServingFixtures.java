package org.bitdelta.serving;

import org.bitdelta.testing.TestData;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Shared by the engine tests: the bundled stories260K family, waiting with a limit, and requests alone or all at once. */
final class ServingFixtures {
    static final Path BASE = TestData.bundledModel("stories260K");
    static final Path ALICE = TestData.bundledModel("stories260K-ft-alice");
    static final Path SHAKESPEARE = TestData.bundledModel("stories260K-ft-shakespeare");

    private ServingFixtures() {
    }

    /** The result, failing the test instead of hanging when the engine never ends the completion. */
    static CompletionResult await(Completion completion) {
        try {
            return completion.future().get(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted waiting for " + completion, e);
        } catch (ExecutionException | TimeoutException e) {
            throw new AssertionError("no result for " + completion + " within 60 s", e);
        }
    }

    /** Takes {@code count} pieces, waiting up to 60 s for each. */
    static List<Piece> take(Completion completion, int count) throws InterruptedException {
        List<Piece> pieces = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            Piece piece = completion.poll(java.time.Duration.ofSeconds(60));
            if (piece == null) {
                throw new AssertionError("piece " + i + " of " + completion + " did not come within 60 s");
            }
            pieces.add(piece);
        }
        return pieces;
    }

    /** Runs one request on its own: nothing else is submitted meanwhile by the caller. */
    static CompletionResult alone(Engine engine, Request request) {
        return await(engine.submit(request));
    }

    /** Each request on its own, one after the other. */
    static List<CompletionResult> eachAlone(Engine engine, List<Request> requests) {
        List<CompletionResult> results = new ArrayList<>();
        for (Request request : requests) {
            results.add(alone(engine, request));
        }
        return results;
    }

    /**
     * All requests at once, each from a client thread of its own that reads it piece by piece as a streaming client
     * does; the pieces' text must add up to the result's. The results in the order of the requests.
     */
    static List<CompletionResult> concurrently(Engine engine, List<Request> requests) throws InterruptedException, ExecutionException {
        ExecutorService clients = Executors.newFixedThreadPool(requests.size());
        try {
            List<Future<CompletionResult>> futures = new ArrayList<>();
            for (Request request : requests) {
                futures.add(clients.submit(() -> {
                    Completion completion = engine.submit(request);
                    StringBuilder streamed = new StringBuilder();
                    completion.stream().forEach(piece -> streamed.append(piece.text()));
                    CompletionResult result = completion.result();
                    assertEquals(result.text(), streamed.toString(), "the pieces add up to the text");
                    return result;
                }));
            }
            List<CompletionResult> results = new ArrayList<>();
            for (Future<CompletionResult> future : futures) {
                results.add(future.get());
            }
            return results;
        } finally {
            clients.shutdown();
        }
    }
}
