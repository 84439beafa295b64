/**
 * Public API for inference: a Llama/Mistral model loaded once and serving many BitDelta fine-tunes as tenants
 * ({@link org.bitdelta.inference.DecoderModel}), batched generation, perplexity, and the tokenizer.
 */
package org.bitdelta.inference;
