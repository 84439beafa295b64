package org.bitdelta.serving;

import org.bitdelta.testing.TestData;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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

    /**
     * Holds the engine thread at a step boundary: the completion's listener drains its pieces and, once {@code count}
     * have come, waits there (on the engine thread, between steps) until {@link #release()}. The engine cannot run
     * ahead of the test meanwhile, whatever the machine's load. A call on the registering thread (pieces already
     * there) never holds.
     */
    static final class Hold implements AutoCloseable {
        private final Completion completion;
        private final int count;
        private final Thread registering = Thread.currentThread();
        private final CountDownLatch held = new CountDownLatch(1);
        private final CountDownLatch released = new CountDownLatch(1);
        private final List<Piece> pieces = Collections.synchronizedList(new ArrayList<>());
        private final AtomicBoolean done = new AtomicBoolean();

        Hold(Completion completion, int count) {
            this(completion, count, List.of());
        }

        private Hold(Completion completion, int count, List<Piece> before) {
            this.completion = completion;
            this.count = count;
            pieces.addAll(before);
            completion.onAvailable(this::drain);
        }

        /**
         * The next hold of the same completion, at {@code total} pieces in all: it takes over the completion's one
         * listener. Made while this one holds the engine, it cannot miss its piece.
         */
        Hold then(int total) {
            return new Hold(completion, total, pieces());
        }

        private void drain() {
            for (Piece piece = completion.poll(); piece != null; piece = completion.poll()) {
                pieces.add(piece);
            }
            if (pieces.size() >= count && Thread.currentThread() != registering && done.compareAndSet(false, true)) {
                held.countDown();
                try {
                    released.await(60, TimeUnit.SECONDS); // a failed test releases it in close()
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        /** Waits until the engine thread is held; the number of pieces drained by then. */
        int awaitHeld() throws InterruptedException {
            assertTrue(held.await(60, TimeUnit.SECONDS), "the engine did not reach piece " + count + " of " + completion + " within 60 s");
            return pieces.size();
        }

        /** The pieces drained so far, in order. */
        List<Piece> pieces() {
            synchronized (pieces) {
                return List.copyOf(pieces);
            }
        }

        void release() {
            released.countDown();
        }

        @Override
        public void close() {
            release();
        }
    }
}
