package org.bitdelta.server.internal;

import com.fasterxml.jackson.core.io.JsonStringEncoder;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.Usage;

import java.nio.charset.StandardCharsets;

/**
 * OpenAI's response bodies for one completion: the whole answer ("text_completion" / "chat.completion") and the
 * chunks of a stream ("text_completion" / "chat.completion.chunk"), with the same id, created and model in each.
 */
final class OpenAiResponses {
    private final OpenAiRequests.Kind kind;
    private final String id;
    private final long created;
    private final String model;

    OpenAiResponses(OpenAiRequests.Kind kind, String id, long created, String model) {
        this.kind = kind;
        this.id = id;
        this.created = created;
        this.model = model;
    }

    private boolean chat() {
        return kind == OpenAiRequests.Kind.CHAT;
    }

    static String finishReason(FinishReason reason) {
        return switch (reason) {
            case STOP -> "stop";
            case LENGTH -> "length";
            // Never sent as a finish reason: these end the stream with an error event instead.
            case CANCELLED, ERROR -> throw new IllegalArgumentException("no OpenAI finish_reason for " + reason);
        };
    }

    private ObjectNode envelope(String object) {
        return Json.object().put("id", id).put("object", object).put("created", created).put("model", model)
                .putNull("system_fingerprint");
    }

    static ObjectNode usage(Usage usage) {
        return Json.object().put("prompt_tokens", usage.promptTokens()).put("completion_tokens", usage.completionTokens())
                .put("total_tokens", usage.totalTokens());
    }

    ObjectNode whole(CompletionResult result) {
        ObjectNode body = envelope(chat() ? "chat.completion" : "text_completion");
        ObjectNode choice = body.putArray("choices").addObject().put("index", 0);
        if (chat()) {
            choice.putObject("message").put("role", "assistant").put("content", result.text()).putNull("refusal");
        } else {
            choice.put("text", result.text());
        }
        choice.putNull("logprobs");
        choice.put("finish_reason", finishReason(result.finishReason()));
        body.set("usage", usage(result.usage()));
        return body;
    }

    private ObjectNode chunk(boolean includeUsage) {
        ObjectNode chunk = envelope(chat() ? "chat.completion.chunk" : "text_completion");
        if (includeUsage) {
            chunk.putNull("usage");
        }
        return chunk;
    }

    private ObjectNode choice(ObjectNode chunk) {
        return chunk.putArray("choices").addObject().put("index", 0);
    }

    /** The first chunk of a chat stream: the role, no content yet. */
    ObjectNode roleChunk(boolean includeUsage) {
        ObjectNode chunk = chunk(includeUsage);
        ObjectNode choice = choice(chunk);
        choice.putObject("delta").put("role", "assistant").put("content", "");
        choice.putNull("logprobs");
        choice.putNull("finish_reason");
        return chunk;
    }

    /** A text chunk's bytes around its text, rendered once per completion: a stream's tokens only fill the gap. */
    private byte[][] textChunkFrame;

    /**
     * The text chunk as bytes: the frame rendered once by Jackson around a marker, the text escaped by Jackson's
     * string encoder, so that each token costs an escape and a copy rather than building and writing a JSON tree.
     */
    byte[][] textChunkParts(String text, boolean includeUsage) {
        if (textChunkFrame == null) {
            String marker = "@@bitdelta-text@@";
            String rendered = Json.string(textChunk(marker, includeUsage));
            int at = rendered.indexOf(marker);
            textChunkFrame = new byte[][]{rendered.substring(0, at).getBytes(StandardCharsets.UTF_8),
                    rendered.substring(at + marker.length()).getBytes(StandardCharsets.UTF_8)};
        }
        return new byte[][]{textChunkFrame[0], JsonStringEncoder.getInstance().quoteAsUTF8(text), textChunkFrame[1]};
    }

    ObjectNode textChunk(String text, boolean includeUsage) {
        ObjectNode chunk = chunk(includeUsage);
        ObjectNode choice = choice(chunk);
        if (chat()) {
            choice.putObject("delta").put("content", text);
        } else {
            choice.put("text", text);
        }
        choice.putNull("logprobs");
        choice.putNull("finish_reason");
        return chunk;
    }

    ObjectNode finishChunk(FinishReason reason, boolean includeUsage) {
        ObjectNode chunk = chunk(includeUsage);
        ObjectNode choice = choice(chunk);
        if (chat()) {
            choice.putObject("delta");
        } else {
            choice.put("text", "");
        }
        choice.putNull("logprobs");
        choice.put("finish_reason", finishReason(reason));
        return chunk;
    }

    /** stream_options.include_usage: one more chunk before [DONE], with no choices and the usage. */
    ObjectNode usageChunk(Usage usage) {
        ObjectNode chunk = envelope(chat() ? "chat.completion.chunk" : "text_completion");
        ArrayNode choices = chunk.putArray("choices");
        assert choices.isEmpty();
        chunk.set("usage", usage(usage));
        return chunk;
    }
}
