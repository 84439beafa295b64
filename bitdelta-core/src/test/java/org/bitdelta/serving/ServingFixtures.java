package org.bitdelta.serving;

import org.bitdelta.testing.TestData;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Shared by the engine tests: the bundled stories260K family and waiting with a limit. */
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
}
