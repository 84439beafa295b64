package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;
import org.bitdelta.server.BitDeltaServer;
import org.bitdelta.server.ServerOptions;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Map;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve a base model and its BitDelta fine-tunes over an OpenAI-compatible HTTP API, where \"model\" names the"
                + " fine-tune (the base answers to \"base\" and to its folder's name), with a web page that streams several"
                + " fine-tunes' answers side by side.",
                "Runs until interrupted (Ctrl-C)."})
final class ServeCommand extends CliCommand {
    @Mixin
    BaseModelOption base;

    @Mixin
    TenantOptions tenantFiles;

    @Mixin
    HttpOptions http;

    @Option(names = "--host", defaultValue = "127.0.0.1", paramLabel = "ADDRESS",
            description = "address to listen on (default: ${DEFAULT-VALUE}, this machine only; 0.0.0.0 for every interface)")
    String host;

    @Option(names = "--max-request-bytes", defaultValue = "4194304", paramLabel = "N",
            description = "larger request bodies get 413 (default: ${DEFAULT-VALUE})")
    long maxRequestBytes;

    @Option(names = "--max-running", defaultValue = "64", paramLabel = "N",
            description = "requests decoded together at most; more wait (default: ${DEFAULT-VALUE})")
    int maxRunning;

    @Option(names = "--no-admin", description = "do not serve POST /v1/tenants and DELETE /v1/tenants/NAME (loading and unloading tenants)")
    boolean noAdmin;

    @Mixin
    BackendOption backend;

    @Override
    public Integer call() {
        PrintWriter out = out();
        ServerOptions options = http.serverOptions().host(host).maxRequestBytes(maxRequestBytes).adminEndpoints(!noAdmin);
        try (TensorBackend tensorBackend = backend.open();
             Engine engine = Engine.open(base.folder, EngineOptions.defaults().backend(tensorBackend).maxRunning(maxRunning))) {
            for (Map.Entry<String, Path> delta : tenantFiles.deltas.entrySet()) {
                try {
                    engine.addTenant(delta.getKey(), delta.getValue());
                } catch (BitDeltaException e) {
                    throw new BitDeltaException("--delta " + delta.getKey() + "=" + delta.getValue() + ": " + e.getMessage(), e);
                }
            }
            serve(engine, options, tensorBackend.name(), out);
        }
        return 0;
    }

    /** Starts the server, prints where it is and how to use it, and serves until the thread is interrupted or the JVM stops. */
    static void serve(Engine engine, ServerOptions options, String backendName, PrintWriter out) {
        try (BitDeltaServer server = BitDeltaServer.start(engine, options)) {
            Thread shutdown = new Thread(server::close, "bitdelta-serve-shutdown");
            Runtime.getRuntime().addShutdownHook(shutdown);
            String url = server.url().toString();
            out.printf("bitdelta serve: %s on the %s backend%n", String.join(", ", engine.tenants()), backendName);
            out.printf("  web page   %s%n", url);
            out.printf("  API        %sv1  (OpenAI-compatible: /v1/models, /v1/completions, /v1/chat/completions; \"model\" picks the fine-tune)%n", url);
            out.printf("  metrics    %smetrics   health %shealth%n", url, url);
            out.printf("  API key    %s%n", options.apiKey() == null ? "none (set --api-key or " + HttpOptions.API_KEY_VARIABLE + " to require one)" : "required");
            String model = engine.tenants().get(engine.tenants().size() - 1);
            out.printf("  try        curl %sv1/chat/completions -H 'Content-Type: application/json'%s \\%n"
                            + "               -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}], \"max_tokens\": 48}'%n",
                    url, options.apiKey() == null ? "" : " -H \"Authorization: Bearer $" + HttpOptions.API_KEY_VARIABLE + "\"", model);
            out.println("Serving until interrupted (Ctrl-C).");
            out.flush();
            try {
                server.awaitStop();
            } catch (InterruptedException e) {
                out.println("interrupted: stopping the server");
            } finally {
                try {
                    Runtime.getRuntime().removeShutdownHook(shutdown);
                } catch (IllegalStateException e) {
                    // The JVM is shutting down already: the hook closes the server.
                }
            }
        }
    }
}
