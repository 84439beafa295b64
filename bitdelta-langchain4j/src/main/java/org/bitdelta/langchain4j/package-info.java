/**
 * LangChain4j chat models backed by the in-process serving engine: {@link org.bitdelta.langchain4j.BitDeltaChatModel}
 * and {@link org.bitdelta.langchain4j.BitDeltaStreamingChatModel}. The request's model name picks the tenant, so one
 * application switches fine-tunes without loading another model.
 */
package org.bitdelta.langchain4j;
