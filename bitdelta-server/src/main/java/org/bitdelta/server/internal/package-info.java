/**
 * Implementation of the server, not exported: the routes of the OpenAI API ({@code OpenAiRoutes}), parsing and
 * checking requests ({@code OpenAiRequests}) and shaping responses ({@code OpenAiResponses}), server-sent events
 * ({@code SseWriter}), JSON ({@code Json}), the API key filter ({@code AccessFilter}), errors in OpenAI's shape ({@code ApiError}) and the
 * Prometheus metrics ({@code ServerMetrics}).
 */
package org.bitdelta.server.internal;
