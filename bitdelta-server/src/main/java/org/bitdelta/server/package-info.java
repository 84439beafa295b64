/**
 * The OpenAI-compatible HTTP server: {@link org.bitdelta.server.BitDeltaServer} over an engine, configured by
 * {@link org.bitdelta.server.ServerOptions} (port, API key, limits).
 */
package org.bitdelta.server;
