package org.bitdelta.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.listener.ChatModelListener;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import org.bitdelta.serving.Engine;

import java.util.List;
import java.util.Objects;

/**
 * What {@link BitDeltaChatModel} and {@link BitDeltaStreamingChatModel} share: the engine, the defaults and
 * listeners of their builder, and the builder itself. Its public methods implement both models' LangChain4j
 * interfaces.
 */
abstract class EngineChatModel {
    final Engine engine;
    private final ChatRequestParameters defaults;
    private final List<ChatModelListener> listeners;

    EngineChatModel(ParametersBuilder<?> builder) {
        this.engine = builder.engine;
        this.defaults = builder.parameters();
        this.listeners = List.copyOf(builder.listeners);
    }

    public ChatRequestParameters defaultRequestParameters() {
        return defaults;
    }

    public List<ChatModelListener> listeners() {
        return listeners;
    }

    public ModelProvider provider() {
        return ModelProvider.OTHER;
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
