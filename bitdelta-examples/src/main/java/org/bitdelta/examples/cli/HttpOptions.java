package org.bitdelta.examples.cli;

import org.bitdelta.server.ServerOptions;
import picocli.CommandLine.Option;

/** {@code --port} and {@code --api-key}, shared by the commands that serve over HTTP. */
final class HttpOptions {
    static final String API_KEY_VARIABLE = "BITDELTA_API_KEY";

    @Option(names = "--port", defaultValue = "8000", paramLabel = "P", description = "TCP port (default: ${DEFAULT-VALUE}; 0: any free one)")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY",
            description = "require 'Authorization: Bearer KEY' on /v1/... (default: the environment variable " + API_KEY_VARIABLE + ", else none)")
    String apiKey;

    /** The server's defaults with this port and key (the environment's key when --api-key is not given). */
    ServerOptions serverOptions() {
        return ServerOptions.defaults().port(port).apiKey(apiKey != null ? apiKey : System.getenv(API_KEY_VARIABLE));
    }
}
