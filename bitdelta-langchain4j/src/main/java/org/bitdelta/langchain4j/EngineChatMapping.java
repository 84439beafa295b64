package org.bitdelta.langchain4j;

import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.Content;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.InternalServerException;
import dev.langchain4j.exception.LangChain4jException;
import dev.langchain4j.exception.ModelNotFoundException;
import dev.langchain4j.exception.RateLimitException;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.request.ResponseFormat;
import dev.langchain4j.model.chat.request.ResponseFormatType;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
import org.bitdelta.BitDeltaException;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineBusyException;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.serving.Request;

import java.util.ArrayList;
import java.util.List;

/**
 * LangChain4j's chat request to the engine's {@link Request} and the engine's result back to a {@link ChatResponse}:
 * the model name picks the tenant; temperature, top_p, top_k, max output tokens and stop sequences map one to one;
 * what the engine cannot do (tools, penalties, JSON response formats, images) is refused with LangChain4j's
 * {@link UnsupportedFeatureException} rather than ignored.
 */
final class EngineChatMapping {
    private EngineChatMapping() {
    }

    static Completion submit(Engine engine, ChatRequest chatRequest) {
        ChatRequestParameters parameters = chatRequest.parameters();
        String tenant = parameters.modelName();
        if (tenant == null || tenant.isBlank()) {
            throw new dev.langchain4j.exception.InvalidRequestException("no model name: set one on the request or as the default model name "
                    + "(the engine serves " + engine.tenants() + ")");
        }
        refuseUnsupported(parameters);
        try {
            Request request = Request.chat(tenant, messages(chatRequest.messages()));
            if (parameters.temperature() != null) {
                request = request.temperature(parameters.temperature());
            }
            if (parameters.topP() != null) {
                request = request.topP(parameters.topP());
            }
            if (parameters.topK() != null) {
                request = request.topK(parameters.topK());
            }
            if (parameters.maxOutputTokens() != null) {
                request = request.maxTokens(parameters.maxOutputTokens());
            }
            if (parameters.stopSequences() != null && !parameters.stopSequences().isEmpty()) {
                request = request.stop(parameters.stopSequences().toArray(String[]::new));
            }
            return engine.submit(request);
        } catch (RuntimeException e) {
            throw translate(e, tenant);
        }
    }

    /** The engine's exceptions as LangChain4j's, so that its retry and error handling understand them. */
    static LangChain4jException translate(RuntimeException e, String tenant) {
        if (e instanceof LangChain4jException langChain4j) {
            return langChain4j;
        }
        if (e instanceof InvalidRequestException invalid) {
            return invalid.field().equals("tenant") ? new ModelNotFoundException(invalid.getMessage(), invalid)
                    : new dev.langchain4j.exception.InvalidRequestException(invalid.getMessage(), invalid);
        }
        if (e instanceof EngineBusyException busy) {
            return new RateLimitException(busy.getMessage(), busy);
        }
        if (e instanceof BitDeltaException other) {
            return new dev.langchain4j.exception.InvalidRequestException("model '" + tenant + "': " + other.getMessage(), other);
        }
        return new InternalServerException("model '" + tenant + "': " + e, e);
    }

    private static void refuseUnsupported(ChatRequestParameters parameters) {
        if (parameters.toolSpecifications() != null && !parameters.toolSpecifications().isEmpty()) {
            throw new UnsupportedFeatureException("tools are not supported by the BitDelta engine");
        }
        if (parameters.frequencyPenalty() != null && parameters.frequencyPenalty() != 0) {
            throw new UnsupportedFeatureException("frequencyPenalty is not supported by the BitDelta engine");
        }
        if (parameters.presencePenalty() != null && parameters.presencePenalty() != 0) {
            throw new UnsupportedFeatureException("presencePenalty is not supported by the BitDelta engine");
        }
        ResponseFormat format = parameters.responseFormat();
        if (format != null && format.type() != ResponseFormatType.TEXT) {
            throw new UnsupportedFeatureException("response format " + format.type() + " is not supported by the BitDelta engine (text only)");
        }
    }

    static List<org.bitdelta.serving.ChatMessage> messages(List<ChatMessage> messages) {
        List<org.bitdelta.serving.ChatMessage> result = new ArrayList<>();
        for (ChatMessage message : messages) {
            switch (message) {
                case SystemMessage system -> result.add(org.bitdelta.serving.ChatMessage.system(system.text()));
                case UserMessage user -> result.add(org.bitdelta.serving.ChatMessage.user(text(user)));
                case AiMessage ai -> {
                    if (ai.hasToolExecutionRequests()) {
                        throw new UnsupportedFeatureException("tool execution requests are not supported by the BitDelta engine");
                    }
                    result.add(org.bitdelta.serving.ChatMessage.assistant(ai.text() == null ? "" : ai.text()));
                }
                default -> throw new UnsupportedFeatureException(message.type() + " messages are not supported by the BitDelta engine");
            }
        }
        return result;
    }

    private static String text(UserMessage user) {
        StringBuilder text = new StringBuilder();
        for (Content content : user.contents()) {
            if (!(content instanceof TextContent textContent)) {
                throw new UnsupportedFeatureException(content.type() + " content is not supported by the BitDelta engine (text only)");
            }
            text.append(textContent.text());
        }
        return text.toString();
    }

    static FinishReason finishReason(org.bitdelta.serving.FinishReason reason) {
        return switch (reason) {
            case STOP -> FinishReason.STOP;
            case LENGTH -> FinishReason.LENGTH;
            case CANCELLED, ERROR -> FinishReason.OTHER;
        };
    }

    /** The finished completion as LangChain4j's response; a failed one as an exception. */
    static ChatResponse response(Completion completion, CompletionResult result) {
        if (result.finishReason() == org.bitdelta.serving.FinishReason.ERROR) {
            throw new InternalServerException("model '" + result.tenant() + "': the completion failed: " + result.error());
        }
        return ChatResponse.builder()
                .id("bitdelta-" + completion.id())
                .modelName(result.tenant())
                .aiMessage(AiMessage.from(result.text()))
                .tokenUsage(new TokenUsage(result.usage().promptTokens(), result.usage().completionTokens()))
                .finishReason(finishReason(result.finishReason()))
                .build();
    }
}
