/**
 * Runnable examples of the library in application code (see README.md): {@link org.bitdelta.examples.ServeExample}
 * compresses a fine-tune and serves it over the OpenAI-compatible API. Not API themselves.
 */
package org.bitdelta.examples;
