package org.bitdelta.examples;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.server.BitDeltaServer;
import org.bitdelta.server.ServerOptions;
import org.bitdelta.serving.Engine;

import java.nio.file.Path;

/**
 * Compressing a fine-tune and serving it from application code, in a few lines: the fine-tune becomes a 1-bit
 * delta, one engine holds the base, the delta becomes its tenant "finetuned", and the OpenAI-compatible server
 * answers for both ("model": "base" or "finetuned") until the process is stopped.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *   -cp "bitdelta-examples/target/classes:bitdelta-examples/target/lib/*" org.bitdelta.examples.ServeExample \
 *   bitdelta-core/src/test/resources/models/stories260K bitdelta-core/src/test/resources/models/stories260K-ft-alice
 * </pre>
 */
public final class ServeExample {
    private ServeExample() {
    }

    public static void main(String[] args) throws InterruptedException {
        Path base = Path.of(args[0]);
        Path finetuned = Path.of(args[1]);
        try (DeltaModel delta = BitDelta.compress(base, finetuned);
             Engine engine = Engine.open(base);
             BitDeltaServer server = BitDeltaServer.start(engine, ServerOptions.defaults().port(8000))) {
            engine.addTenant("finetuned", delta);
            System.out.println("Serving " + engine.tenants() + " at " + server.url() + " (OpenAI API under /v1)");
            server.awaitStop();
        }
    }
}
