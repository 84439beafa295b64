package org.bitdelta.server;

import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.Request;
import org.bitdelta.testing.EngineHold;

/**
 * Holds the engine thread between steps, so that a test acts on requests that are surely still running, whatever the
 * machine's load (the engine never waits for HTTP clients and can finish a few hundred tokens while a test thread
 * is descheduled). The server's requests are not the test's to listen to, so a filler request of the base model runs
 * beside them and carries the {@link EngineHold}. Requests made while the gate holds wait in the engine's queue until
 * {@link #advance}.
 */
final class EngineGate implements AutoCloseable {
    private final Engine engine;
    private final Completion filler;
    private EngineHold hold;
    private int waitingWhenHeld; // the engine's queue when it was last held

    /** Submits the filler and returns once the engine thread holds after its first piece. */
    static EngineGate hold(Engine engine) throws InterruptedException {
        return new EngineGate(engine, engine.submit(Request.tokens("base", 1).maxTokens(400).ignoreEos(true)));
    }

    private EngineGate(Engine engine, Completion filler) throws InterruptedException {
        this.engine = engine;
        this.filler = filler;
        this.hold = new EngineHold(filler, 1);
        hold.awaitHeld();
        waitingWhenHeld = engine.stats().waiting();
    }

    /**
     * Waits (up to 10 s) until {@code requests} more requests wait in the engine's queue than when it was last held (the
     * test's requests, sent from other threads, have reached it), then {@link #advance}s {@code steps}.
     */
    void admit(int requests, int steps) throws InterruptedException {
        int expected = waitingWhenHeld + requests;
        TestServer.waitFor(requests + " more request(s) to reach the engine's queue", 10_000, () -> engine.stats().waiting() == expected);
        advance(steps);
    }

    /** Lets the engine run until the filler has produced {@code steps} more pieces (one a step), then holds it again. */
    void advance(int steps) throws InterruptedException {
        EngineHold next = hold.then(hold.pieces().size() + steps); // made while held: it cannot miss its piece
        hold.release();
        hold = next;
        hold.awaitHeld();
        waitingWhenHeld = engine.stats().waiting();
    }

    /** Lets the engine run freely and cancels the filler. */
    @Override
    public void close() {
        hold.release();
        filler.cancel();
    }
}
