package org.bitdelta.server;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.testing.TestData;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * One engine on the bundled stories260K family, shared by the server's tests (compressing and loading once per test
 * JVM): the base (as "base" and "stories260K") and three tenants, "alice" and "shakespeare" (per-matrix scales)
 * and "alice-rows" (alice with per-row scales, a third distinct fine-tune). Each test starts its own server on it.
 */
final class TestServer {
    static final String BASE_ALIAS = "stories260K";
    static final List<String> TENANTS = List.of("alice", "shakespeare", "alice-rows");
    private static Engine engine;
    private static Path deltas;

    private TestServer() {
    }

    /** Polls {@code condition} every millisecond until it holds; the milliseconds that took, or an AssertionError. */
    static long waitFor(String what, long timeoutMillis, BooleanSupplier condition) throws InterruptedException {
        long start = System.nanoTime();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - start > TimeUnit.MILLISECONDS.toNanos(timeoutMillis)) {
                throw new AssertionError("timed out after " + timeoutMillis + " ms waiting for " + what);
            }
            TimeUnit.MILLISECONDS.sleep(1);
        }
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    }

    static synchronized Engine engine() {
        if (engine == null) {
            deltas = deltaFolder();
            Path base = TestData.bundledModel("stories260K");
            engine = Engine.open(base, EngineOptions.defaults().backend("cpu"));
            engine.addTenant("alice", deltas.resolve("alice.bitdelta"));
            engine.addTenant("shakespeare", deltas.resolve("shakespeare.bitdelta"));
            engine.addTenant("alice-rows", deltas.resolve("alice-rows.bitdelta"));
            Runtime.getRuntime().addShutdownHook(new Thread(engine::close, "close-test-engine"));
        }
        return engine;
    }

    /** The compressed deltas, written once into target/test-deltas. */
    static synchronized Path deltaFolder() {
        Path folder = Path.of("target", "test-deltas").toAbsolutePath();
        try {
            Files.createDirectories(folder);
            Path base = TestData.bundledModel("stories260K");
            write(base, "stories260K-ft-alice", CompressOptions.defaults(), folder.resolve("alice.bitdelta"));
            write(base, "stories260K-ft-shakespeare", CompressOptions.defaults(), folder.resolve("shakespeare.bitdelta"));
            write(base, "stories260K-ft-alice", CompressOptions.defaults().perRowScales(true), folder.resolve("alice-rows.bitdelta"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return folder;
    }

    private static void write(Path base, String finetuned, CompressOptions options, Path file) {
        try (DeltaModel delta = BitDelta.compress(base, TestData.bundledModel(finetuned), options)) {
            delta.save(file, true);
        }
    }

    static BitDeltaServer start(ServerOptions options) {
        return BitDeltaServer.start(engine(), options.port(0));
    }

    static BitDeltaServer start() {
        return start(ServerOptions.defaults());
    }
}
