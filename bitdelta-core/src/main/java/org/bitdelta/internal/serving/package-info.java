/**
 * Internal: the serving engine behind {@link org.bitdelta.serving.Engine}, split as vLLM splits it: the engine
 * thread ({@code EngineCore}), request checking and tokenization ({@code InputProcessor}, {@code ChatTemplate}),
 * continuous batching ({@code Scheduler}, {@code KvBlockBudget}), the decoder call ({@code ModelRunner}), text
 * ({@code Detokenizer}), stop strings ({@code StopStrings}) and the hand-over to consumers
 * ({@code CompletionStream}). Exported to jinjava only (for the chat templates' functions); not public API.
 */
package org.bitdelta.internal.serving;
