/**
 * Public API for inference: a Llama/Mistral model loaded once and serving many BitDelta fine-tunes as tenants
 * ({@link org.bitdelta.inference.DecoderModel}), perplexity, and the tokenizer. Generation is served by
 * {@link org.bitdelta.serving}.
 */
package org.bitdelta.inference;
