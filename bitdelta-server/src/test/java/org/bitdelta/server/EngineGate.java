package org.bitdelta.server;

import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.Request;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Holds the engine thread between steps, so that a test acts on requests that are surely still running, whatever the
 * machine's load (the engine never waits for HTTP clients and can finish a few hundred tokens while a test thread
 * is descheduled). A filler request of the base model runs beside the test's requests; its listener, which the
 * engine calls on its own thread between steps, waits there once the filler has produced the pieces allowed so far.
 * Requests made while the gate holds wait in the engine's queue until {@link #advance}.
 */
final class EngineGate implements AutoCloseable {
    private static final long WAIT_MILLIS = 60_000;

    private final Completion filler;
    private final Thread registering = Thread.currentThread();
    private long pieces;
    private long allowed;
    private boolean holding;
    private boolean open;

    /** Submits the filler and returns once the engine thread holds after its first piece. */
    static EngineGate hold(Engine engine) throws InterruptedException {
        EngineGate gate = new EngineGate(engine.submit(Request.tokens("base", 1).maxTokens(400).ignoreEos(true)));
        gate.awaitHolding();
        return gate;
    }

    private EngineGate(Completion filler) {
        this.filler = filler;
        this.allowed = 1;
        filler.onAvailable(this::drain);
    }

    private void drain() {
        int drained = 0;
        while (filler.poll() != null) {
            drained++;
        }
        if (Thread.currentThread() == registering) {
            return; // a call on the test's own thread (pieces already there) never holds
        }
        synchronized (this) {
            pieces += drained;
            long deadline = System.currentTimeMillis() + WAIT_MILLIS; // a failed test opens the gate in close()
            while (!open && pieces >= allowed && System.currentTimeMillis() < deadline) {
                holding = true;
                notifyAll();
                try {
                    wait(Math.max(1, deadline - System.currentTimeMillis()));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            holding = false;
        }
    }

    /** Lets the engine run until the filler has produced {@code steps} more pieces (one a step), then holds it again. */
    synchronized void advance(int steps) throws InterruptedException {
        allowed = pieces + steps;
        holding = false;
        notifyAll();
        awaitHolding();
    }

    private synchronized void awaitHolding() throws InterruptedException {
        long deadline = System.currentTimeMillis() + WAIT_MILLIS;
        while (!holding && System.currentTimeMillis() < deadline) {
            wait(Math.max(1, deadline - System.currentTimeMillis()));
        }
        assertTrue(holding, "the engine did not reach the filler's piece " + allowed + " within " + WAIT_MILLIS + " ms");
    }

    /** Lets the engine run freely and cancels the filler. */
    @Override
    public void close() {
        synchronized (this) {
            open = true;
            notifyAll();
        }
        filler.cancel();
    }
}
