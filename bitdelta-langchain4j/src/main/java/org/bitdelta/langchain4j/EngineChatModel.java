package org.bitdelta.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.listener.ChatModelListener;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.request.DefaultChatRequestParameters;
import org.bitdelta.serving.Engine;

import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;

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
        /** LangChain4j's own builder holds the default parameters: each is named once, in its setter below. */
        private final DefaultChatRequestParameters.Builder<?> parameters =
                ChatRequestParameters.builder().modelName(Engine.BASE).stopSequences(List.of());
        List<ChatModelListener> listeners = List.of();

        ParametersBuilder(Engine engine) {
            this.engine = Objects.requireNonNull(engine, "engine");
        }

        @SuppressWarnings("unchecked")
        private B self() {
            return (B) this;
        }

        /** Applies one setting to the default parameters and returns this builder: the whole of each parameter setter. */
        private B with(Consumer<DefaultChatRequestParameters.Builder<?>> setting) {
            setting.accept(parameters);
            return self();
        }

        /** The default tenant ("base", the base's folder name, or a tenant's name). Default: "base". */
        public B modelName(String name) {
            return with(defaults -> defaults.modelName(Objects.requireNonNull(name, "modelName")));
        }

        public B temperature(Double value) {
            return with(defaults -> defaults.temperature(value));
        }

        public B topP(Double value) {
            return with(defaults -> defaults.topP(value));
        }

        public B topK(Integer value) {
            return with(defaults -> defaults.topK(value));
        }

        public B maxOutputTokens(Integer value) {
            return with(defaults -> defaults.maxOutputTokens(value));
        }

        public B stopSequences(List<String> value) {
            return with(defaults -> defaults.stopSequences(List.copyOf(value)));
        }

        public B listeners(List<ChatModelListener> value) {
            this.listeners = List.copyOf(value);
            return self();
        }

        ChatRequestParameters parameters() {
            return parameters.build();
        }
    }
}
