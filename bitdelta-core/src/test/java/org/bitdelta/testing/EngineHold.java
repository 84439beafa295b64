package org.bitdelta.testing;

import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Piece;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Holds the engine thread at a step boundary: the completion's listener drains its pieces and, once {@code count}
 * have come, waits there (on the engine thread, between steps) until {@link #release()}. The engine cannot run
 * ahead of the test meanwhile, whatever the machine's load. A call on the registering thread (pieces already
 * there) never holds.
 */
public final class EngineHold implements AutoCloseable {
    private final Completion completion;
    private final int count;
    private final Thread registering = Thread.currentThread();
    private final CountDownLatch held = new CountDownLatch(1);
    private final CountDownLatch released = new CountDownLatch(1);
    private final List<Piece> pieces = Collections.synchronizedList(new ArrayList<>());
    private final AtomicBoolean done = new AtomicBoolean();

    public EngineHold(Completion completion, int count) {
        this(completion, count, List.of());
    }

    private EngineHold(Completion completion, int count, List<Piece> before) {
        this.completion = completion;
        this.count = count;
        pieces.addAll(before);
        completion.onAvailable(this::drain);
    }

    /**
     * The next hold of the same completion, at {@code total} pieces in all: it takes over the completion's one
     * listener. Made while this one holds the engine, it cannot miss its piece.
     */
    public EngineHold then(int total) {
        return new EngineHold(completion, total, pieces());
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
    public int awaitHeld() throws InterruptedException {
        assertTrue(held.await(60, TimeUnit.SECONDS), "the engine did not reach piece " + count + " of " + completion + " within 60 s");
        return pieces.size();
    }

    /** The pieces drained so far, in order. */
    public List<Piece> pieces() {
        synchronized (pieces) {
            return List.copyOf(pieces);
        }
    }

    public void release() {
        released.countDown();
    }

    @Override
    public void close() {
        release();
    }
}
