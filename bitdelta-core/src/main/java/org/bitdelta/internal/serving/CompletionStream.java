package org.bitdelta.internal.serving;

import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Piece;
import org.bitdelta.serving.Request;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The hand-over between the engine thread and a completion's consumer: the engine appends pieces and never waits
 * (the queue is unbounded, and holds at most one piece per token of max_tokens plus the last); the consumer takes
 * them by polling, blocking, or when told they are there ({@link #onAvailable}).
 */
public final class CompletionStream {
    private static final Logger LOG = LoggerFactory.getLogger(CompletionStream.class);

    private final long id;
    private final Request request;
    private final int promptTokens;
    private final Runnable wakeEngine;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<Piece> pieces = new ArrayDeque<>();
    private final CompletableFuture<CompletionResult> future = new CompletableFuture<>();
    private CompletionResult result;
    private boolean lastTaken;
    private Runnable listener;
    private volatile boolean cancelRequested;

    CompletionStream(long id, Request request, int promptTokens, Runnable wakeEngine) {
        this.id = id;
        this.request = request;
        this.promptTokens = promptTokens;
        this.wakeEngine = wakeEngine;
    }

    public long id() {
        return id;
    }

    public Request request() {
        return request;
    }

    public int promptTokens() {
        return promptTokens;
    }

    // ---------------------------------------------------------------- engine side

    /** Appends a piece (the last one carries the result), wakes waiting consumers and calls the listener. */
    void publish(Piece piece) {
        Runnable toCall;
        lock.lock();
        try {
            if (result != null) {
                throw new IllegalStateException("completion " + id + " already ended");
            }
            pieces.addLast(piece);
            if (piece.last()) {
                result = piece.result();
            }
            changed.signalAll();
            toCall = listener;
        } finally {
            lock.unlock();
        }
        // The listener hears of the last piece before the result completes: whoever waits for the result then knows every
        // notification has been made (a consumer draining on its own thread was told of each piece by then).
        if (toCall != null) {
            notify(toCall);
        }
        if (piece.last()) {
            future.complete(piece.result());
        }
    }

    boolean cancelRequested() {
        return cancelRequested;
    }

    private void notify(Runnable toCall) {
        try {
            toCall.run();
        } catch (RuntimeException e) {
            // A consumer's callback failing must not stop the engine; it is its bug to see in the log.
            LOG.error("the onAvailable listener of completion {} threw", id, e);
        }
    }

    // ---------------------------------------------------------------- consumer side

    /** The next piece, or null when none is there now (or the last one was taken). Never blocks. */
    public Piece poll() {
        lock.lock();
        try {
            return take();
        } finally {
            lock.unlock();
        }
    }

    /** The next piece, waiting up to {@code timeout}; null on timeout, or when the last piece was taken already. */
    public Piece poll(long timeout, TimeUnit unit) throws InterruptedException {
        long remaining = unit.toNanos(timeout);
        lock.lock();
        try {
            while (pieces.isEmpty() && !lastTaken) {
                if (remaining <= 0) {
                    return null;
                }
                remaining = changed.awaitNanos(remaining);
            }
            return take();
        } finally {
            lock.unlock();
        }
    }

    /** The next piece, waiting as long as it takes; null once the last piece was taken. */
    public Piece next() throws InterruptedException {
        lock.lock();
        try {
            while (pieces.isEmpty() && !lastTaken) {
                changed.await();
            }
            return take();
        } finally {
            lock.unlock();
        }
    }

    private Piece take() {
        Piece piece = pieces.pollFirst();
        if (piece != null && piece.last()) {
            lastTaken = true;
        }
        return piece;
    }

    public void onAvailable(Runnable callback) {
        boolean callNow;
        lock.lock();
        try {
            listener = callback;
            callNow = callback != null && (!pieces.isEmpty() || result != null);
        } finally {
            lock.unlock();
        }
        if (callNow) {
            notify(callback);
        }
    }

    public boolean isDone() {
        return future.isDone();
    }

    public CompletableFuture<CompletionResult> future() {
        return future;
    }

    /** Asks the engine to end this completion at its next step boundary; no effect once it ended. */
    public void cancel() {
        if (!future.isDone()) {
            cancelRequested = true;
            wakeEngine.run();
        }
    }
}
