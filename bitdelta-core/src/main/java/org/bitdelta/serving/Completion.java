package org.bitdelta.serving;

import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.serving.CompletionStream;

import java.time.Duration;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * A submitted request: its stream of {@link Piece}s, its cancellation and its result.
 *
 * <p>The engine never waits for a consumer: pieces queue up here (one per generated token at most) and are taken
 * in order by whichever way suits the caller; each piece is handed out once.
 * <ul>
 *   <li>blocking: {@link #stream()} (ends after the last piece), or {@link #poll(Duration)};</li>
 *   <li>non-blocking, for servers on an event loop: {@link #onAvailable(Runnable)} says when to drain with
 *       {@link #poll()}, which never blocks;</li>
 *   <li>just the outcome: {@link #result()} or {@link #future()}.</li>
 * </ul>
 *
 * <pre>{@code
 * Completion completion = engine.submit(Request.text("alice", "Once upon a time").maxTokens(64));
 * completion.stream().forEach(piece -> System.out.print(piece.text()));
 * CompletionResult result = completion.result(); // text, tokens, finish reason, usage, timings
 * }</pre>
 */
public final class Completion {
    private final CompletionStream stream;

    Completion(CompletionStream stream) {
        this.stream = stream;
    }

    /** The engine's number for this request, unique per engine, in submission order. */
    public long id() {
        return stream.id();
    }

    public Request request() {
        return stream.request();
    }

    /** Tokens of the prompt as run (after the chat template and the tokenizer), known at submission. */
    public int promptTokens() {
        return stream.promptTokens();
    }

    /** The next piece if one is there now, else null (also after the last piece was taken). Never blocks. */
    public Piece poll() {
        return stream.poll();
    }

    /** The next piece, waiting up to {@code timeout}; null on timeout or after the last piece was taken. */
    public Piece poll(Duration timeout) throws InterruptedException {
        return stream.poll(timeout.toNanos(), TimeUnit.NANOSECONDS);
    }

    /**
     * The pieces as they come, blocking between them; the stream ends after the last piece. If the waiting thread
     * is interrupted the stream throws a {@link BitDeltaException} (the interrupt flag stays set); the completion
     * goes on unless {@link #cancel()}led.
     */
    public Stream<Piece> stream() {
        Iterator<Piece> iterator = new Iterator<>() {
            private Piece next;
            private boolean ended;

            @Override
            public boolean hasNext() {
                if (next == null && !ended) {
                    try {
                        next = stream.next();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new BitDeltaException("interrupted while waiting for the next piece of completion " + id(), e);
                    }
                    ended = next == null;
                }
                return next != null;
            }

            @Override
            public Piece next() {
                if (!hasNext()) {
                    throw new NoSuchElementException("completion " + id() + " has no more pieces");
                }
                Piece piece = next;
                next = null;
                return piece;
            }
        };
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(iterator, Spliterator.ORDERED | Spliterator.NONNULL), false);
    }

    /**
     * Calls {@code listener} whenever pieces may have arrived, and once when the completion ends; at once if some
     * are already there. It runs on the engine's thread: it must return quickly and never block (hand the draining
     * to your own executor or event loop, then {@link #poll()} until null). One listener; null removes it.
     */
    public void onAvailable(Runnable listener) {
        stream.onAvailable(listener);
    }

    /**
     * Ends the completion at the next step boundary with {@link FinishReason#CANCELLED}: its batch slot and KV
     * cache blocks are freed there, and a last piece carries the result. No effect once it ended.
     */
    public void cancel() {
        stream.cancel();
    }

    /** Whether it ended (its result is set; pieces may still be queued). */
    public boolean isDone() {
        return stream.isDone();
    }

    /** Waits until the completion ends and returns its result (also for errors: see {@link CompletionResult#error()}). */
    public CompletionResult result() {
        return stream.future().join();
    }

    /** The result when it comes; completing or cancelling the returned future does not affect the request. */
    public CompletableFuture<CompletionResult> future() {
        return stream.future().copy();
    }

    @Override
    public String toString() {
        return "Completion[" + id() + ", " + request() + (isDone() ? ", done" : "") + "]";
    }
}
