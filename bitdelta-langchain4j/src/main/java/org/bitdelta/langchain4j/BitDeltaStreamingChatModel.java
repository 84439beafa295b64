package org.bitdelta.langchain4j;

import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.chat.response.StreamingHandle;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.Piece;

/**
 * A LangChain4j {@link StreamingChatModel} answered by an in-process BitDelta {@link Engine}, token by token: the
 * model name picks the tenant. The handler is called on a virtual thread of its own per request (never on the
 * engine's thread, so a slow handler delays only its own request); {@link StreamingHandle#cancel()} from a partial
 * response's context cancels the completion and frees its batch slot, after which the handler hears nothing more.
 *
 * <pre>{@code
 * StreamingChatModel model = BitDeltaStreamingChatModel.builder(engine).modelName("alice").temperature(0.0).build();
 * model.chat("Tell me a story", handler);
 * }</pre>
 */
public final class BitDeltaStreamingChatModel extends EngineChatModel implements StreamingChatModel {
    private BitDeltaStreamingChatModel(Builder builder) {
        super(builder);
    }

    public static Builder builder(Engine engine) {
        return new Builder(engine);
    }

    @Override
    public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
        Completion completion;
        try {
            completion = EngineChatMapping.submit(engine, request);
        } catch (RuntimeException e) {
            handler.onError(e);
            return;
        }
        Handle handle = new Handle(completion);
        Thread.ofVirtual().name("bitdelta-langchain4j-" + completion.id()).start(() -> deliver(completion, handle, handler));
    }

    private static void deliver(Completion completion, Handle handle, StreamingChatResponseHandler handler) {
        try {
            PartialResponseContext context = new PartialResponseContext(handle);
            for (Piece piece : (Iterable<Piece>) completion.stream()::iterator) {
                if (handle.isCancelled()) {
                    continue; // drain to the end without telling the handler more
                }
                if (!piece.text().isEmpty()) {
                    handler.onPartialResponse(new PartialResponse(piece.text()), context);
                }
                if (piece.last()) {
                    CompletionResult result = piece.result();
                    if (result.finishReason() == FinishReason.CANCELLED && handle.isCancelled()) {
                        return;
                    }
                    handler.onCompleteResponse(EngineChatMapping.response(completion, result));
                }
            }
        } catch (RuntimeException e) {
            completion.cancel();
            if (!handle.isCancelled()) {
                handler.onError(e);
            }
        }
    }

    private static final class Handle implements StreamingHandle {
        private final Completion completion;
        private volatile boolean cancelled;

        Handle(Completion completion) {
            this.completion = completion;
        }

        @Override
        public void cancel() {
            cancelled = true;
            completion.cancel();
        }

        @Override
        public boolean isCancelled() {
            return cancelled;
        }
    }

    /** Defaults for every request; a request's own parameters override them. */
    public static final class Builder extends EngineChatModel.ParametersBuilder<Builder> {
        private Builder(Engine engine) {
            super(engine);
        }

        public BitDeltaStreamingChatModel build() {
            return new BitDeltaStreamingChatModel(this);
        }
    }
}
