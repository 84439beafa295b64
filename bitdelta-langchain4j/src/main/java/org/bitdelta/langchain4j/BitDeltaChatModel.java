package org.bitdelta.langchain4j;

import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Engine;

/**
 * A LangChain4j {@link ChatModel} answered by an in-process BitDelta {@link Engine}: the request's model name (or the
 * default model name) picks the tenant, so one loaded base serves every fine-tune an application switches between.
 *
 * <pre>{@code
 * ChatModel alice = BitDeltaChatModel.builder(engine).modelName("alice").temperature(0.0).maxOutputTokens(64).build();
 * String answer = alice.chat("Tell me a story");
 * ChatResponse other = alice.chat(ChatRequest.builder().modelName("shakespeare").messages(UserMessage.from("Hi")).build());
 * }</pre>
 *
 * The engine stays the caller's: this model does not close it. Unset sampling parameters take the engine's defaults
 * (greedy decoding, up to the context length).
 */
public final class BitDeltaChatModel extends EngineChatModel implements ChatModel {
    private BitDeltaChatModel(Builder builder) {
        super(builder);
    }

    public static Builder builder(Engine engine) {
        return new Builder(engine);
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        Completion completion = EngineChatMapping.submit(engine, request);
        return EngineChatMapping.response(completion, completion.result());
    }

    /** Defaults for every request; a request's own parameters override them. */
    public static final class Builder extends EngineChatModel.ParametersBuilder<Builder> {
        private Builder(Engine engine) {
            super(engine);
        }

        public BitDeltaChatModel build() {
            return new BitDeltaChatModel(this);
        }
    }
}
