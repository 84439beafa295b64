/**
 * Public API for serving: an in-process engine ({@link org.bitdelta.serving.Engine}) that runs many requests over
 * one base model and its BitDelta fine-tunes at once, with continuous batching, chunked prefill, a paged KV cache,
 * chat templates, streaming and cancellation.
 *
 * <pre>{@code
 * try (Engine engine = Engine.open(Path.of("models/llama"))) {
 *     engine.addTenant("alice", Path.of("alice.bitdelta"));
 *     Completion completion = engine.submit(Request.chat("alice", List.of(ChatMessage.user("Hello"))).maxTokens(64));
 *     completion.stream().forEach(piece -> System.out.print(piece.text()));
 *     CompletionResult result = completion.result();
 * }
 * }</pre>
 */
package org.bitdelta.serving;
