package org.bitdelta.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.listener.ChatModelListener;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Engine;

import java.util.List;
import java.util.Objects;

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
public final class BitDeltaChatModel implements ChatModel {
    private final Engine engine;
    private final ChatRequestParameters defaults;
    private final List<ChatModelListener> listeners;

    private BitDeltaChatModel(Builder builder) {
        this.engine = builder.engine;
        this.defaults = builder.parameters();
        this.listeners = List.copyOf(builder.listeners);
    }

    public static Builder builder(Engine engine) {
        return new Builder(engine);
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        Completion completion = EngineChatMapping.submit(engine, request);
        return EngineChatMapping.response(completion, completion.result());
    }

    @Override
    public ChatRequestParameters defaultRequestParameters() {
        return defaults;
    }

    @Override
    public List<ChatModelListener> listeners() {
        return listeners;
    }

    @Override
    public ModelProvider provider() {
        return ModelProvider.OTHER;
    }

    /** Defaults for every request; a request's own parameters override them. */
    public static final class Builder extends ParametersBuilder<Builder> {
        private Builder(Engine engine) {
            super(engine);
        }

        public BitDeltaChatModel build() {
            return new BitDeltaChatModel(this);
        }
    }

    /** The builder both models share. */
    abstract static class ParametersBuilder<B extends ParametersBuilder<B>> {
        final Engine engine;
        private String modelName = Engine.BASE;
        private Double temperature;
        private Double topP;
        private Integer topK;
        private Integer maxOutputTokens;
        private List<String> stopSequences = List.of();
        List<ChatModelListener> listeners = List.of();

        ParametersBuilder(Engine engine) {
            this.engine = Objects.requireNonNull(engine, "engine");
        }

        @SuppressWarnings("unchecked")
        private B self() {
            return (B) this;
        }

        /** The default tenant ("base", the base's folder name, or a tenant's name). Default: "base". */
        public B modelName(String name) {
            this.modelName = Objects.requireNonNull(name, "modelName");
            return self();
        }

        public B temperature(Double value) {
            this.temperature = value;
            return self();
        }

        public B topP(Double value) {
            this.topP = value;
            return self();
        }

        public B topK(Integer value) {
            this.topK = value;
            return self();
        }

        public B maxOutputTokens(Integer value) {
            this.maxOutputTokens = value;
            return self();
        }

        public B stopSequences(List<String> value) {
            this.stopSequences = List.copyOf(value);
            return self();
        }

        public B listeners(List<ChatModelListener> value) {
            this.listeners = List.copyOf(value);
            return self();
        }

        ChatRequestParameters parameters() {
            return ChatRequestParameters.builder().modelName(modelName).temperature(temperature).topP(topP).topK(topK)
                    .maxOutputTokens(maxOutputTokens).stopSequences(stopSequences).build();
        }
    }
}
