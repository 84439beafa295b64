/**
 * bitdelta-server: an OpenAI-compatible HTTP server over the serving engine (org.bitdelta.server.BitDeltaServer),
 * its side-by-side web page and Prometheus metrics. org.bitdelta.server.internal is implementation.
 */
module org.bitdelta.server {
    requires transitive org.bitdelta.core;
    requires io.helidon.webserver;
    requires io.helidon.webserver.staticcontent;
    requires io.helidon.http;
    requires micrometer.core;
    requires micrometer.registry.prometheus;
    requires com.fasterxml.jackson.databind;
    requires org.slf4j;

    exports org.bitdelta.server;
}
