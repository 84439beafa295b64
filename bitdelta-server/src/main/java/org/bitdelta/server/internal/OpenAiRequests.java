package org.bitdelta.server.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.serving.Request;

import java.util.ArrayList;
import java.util.List;

/**
 * Reads OpenAI's request bodies (/v1/completions, /v1/chat/completions) into engine {@link Request}s. Fields this
 * server does not know are ignored, as OpenAI's own API does; fields it knows but cannot honour (n > 1, tools,
 * penalties, logprobs, ...) are refused with the field named rather than silently dropped, since the caller would
 * otherwise get something other than what it asked for. vLLM's extensions top_k, ignore_eos and stop_token_ids are
 * accepted too.
 */
public final class OpenAiRequests {
    /** OpenAI's default max_tokens for the legacy completions endpoint. */
    static final int COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
    /** OpenAI's default sampling temperature (the engine's own default is greedy). */
    static final double DEFAULT_TEMPERATURE = 1.0;

    private OpenAiRequests() {
    }

    /** Which endpoint a request came to. */
    public enum Kind {
        COMPLETION, CHAT
    }

    /**
     * A request as the server runs it.
     *
     * @param model        the model (tenant) name as asked
     * @param request      the engine request
     * @param stream       whether to answer as server-sent events
     * @param includeUsage stream_options.include_usage
     */
    public record Parsed(Kind kind, String model, Request request, boolean stream, boolean includeUsage) {
    }

    public static Parsed completion(ObjectNode body) {
        String model = Json.requiredString(body, "model");
        Request request = promptRequest(model, body);
        return finish(Kind.COMPLETION, model, request, body);
    }

    public static Parsed chat(ObjectNode body) {
        String model = Json.requiredString(body, "model");
        Request request = checked(() -> Request.chat(model, messages(body)));
        return finish(Kind.CHAT, model, request, body);
    }

    private static Parsed finish(Kind kind, String model, Request request, ObjectNode body) {
        refuseUnsupported(kind, body);
        request = sampling(kind, request, body);
        boolean stream = Boolean.TRUE.equals(Json.optionalBoolean(body, "stream"));
        boolean includeUsage = false;
        JsonNode options = Json.field(body, "stream_options");
        if (options != null) {
            if (!stream) {
                throw ApiError.invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
            }
            if (!options.isObject()) {
                throw ApiError.invalid("stream_options", "'stream_options' must be an object, got " + Json.describe(options));
            }
            Boolean usage = Json.optionalBoolean((ObjectNode) options, "include_usage");
            includeUsage = Boolean.TRUE.equals(usage);
        }
        return new Parsed(kind, model, request, stream, includeUsage);
    }

    // ------------------------------------------------------------------ prompts

    private static Request promptRequest(String model, ObjectNode body) {
        JsonNode prompt = Json.field(body, "prompt");
        if (prompt == null) {
            throw ApiError.invalid("prompt", "'prompt' is required");
        }
        if (prompt.isTextual()) {
            return checked(() -> Request.text(model, prompt.textValue()));
        }
        if (prompt.isArray()) {
            if (prompt.isEmpty()) {
                throw ApiError.invalid("prompt", "'prompt' is an empty list");
            }
            if (prompt.get(0).isIntegralNumber()) {
                return checked(() -> Request.tokens(model, tokenIds(prompt, "prompt")));
            }
            if (prompt.size() > 1) {
                throw ApiError.invalid("prompt", "'prompt' holds " + prompt.size() + " prompts; this server takes one prompt per request: send "
                        + "them as separate requests (they run in one batch anyway)");
            }
            JsonNode only = prompt.get(0);
            if (only.isTextual()) {
                return checked(() -> Request.text(model, only.textValue()));
            }
            if (only.isArray()) {
                return checked(() -> Request.tokens(model, tokenIds(only, "prompt")));
            }
        }
        throw ApiError.invalid("prompt", "'prompt' must be a string, a list of token ids, or a list of one of those; got " + Json.describe(prompt));
    }

    private static int[] tokenIds(JsonNode array, String param) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode id = array.get(i);
            if (!id.isIntegralNumber() || !id.canConvertToInt() || id.intValue() < 0) {
                throw ApiError.invalid(param, "'" + param + "' item " + i + " must be a token id (an integer >= 0), got " + Json.describe(id));
            }
            ids[i] = id.intValue();
        }
        return ids;
    }

    private static List<ChatMessage> messages(ObjectNode body) {
        JsonNode messages = Json.field(body, "messages");
        if (messages == null) {
            throw ApiError.invalid("messages", "'messages' is required");
        }
        if (!messages.isArray() || messages.isEmpty()) {
            throw ApiError.invalid("messages", "'messages' must be a non-empty list of {role, content}, got " + Json.describe(messages));
        }
        List<ChatMessage> list = new ArrayList<>();
        for (int i = 0; i < messages.size(); i++) {
            String where = "messages[" + i + "]";
            JsonNode message = messages.get(i);
            if (!message.isObject()) {
                throw ApiError.invalid(where, where + " must be an object {role, content}, got " + Json.describe(message));
            }
            JsonNode role = message.get("role");
            if (role == null || !role.isTextual() || role.textValue().isBlank()) {
                throw ApiError.invalid(where + ".role", where + ".role is required: system, user, assistant, ...");
            }
            JsonNode toolCalls = message.get("tool_calls");
            if (toolCalls != null && !toolCalls.isNull() && !toolCalls.isEmpty()) {
                throw ApiError.invalid(where + ".tool_calls", "tool calls are not supported by this server");
            }
            // OpenAI's newer name for the system role; chat templates know "system".
            String roleName = role.textValue().equals("developer") ? "system" : role.textValue();
            list.add(new ChatMessage(roleName, content(message.get("content"), where + ".content")));
        }
        return list;
    }

    /** A message's content: a string, a list of text parts, or null (an assistant turn with no text). */
    private static String content(JsonNode content, String where) {
        if (content == null || content.isNull()) {
            return "";
        }
        if (content.isTextual()) {
            return content.textValue();
        }
        if (content.isArray()) {
            StringBuilder text = new StringBuilder();
            for (int i = 0; i < content.size(); i++) {
                JsonNode part = content.get(i);
                JsonNode type = part.get("type");
                if (type == null || !"text".equals(type.asText()) || part.get("text") == null || !part.get("text").isTextual()) {
                    throw ApiError.invalid(where, where + "[" + i + "] must be a text part {\"type\": \"text\", \"text\": ...}; this server "
                            + "serves text models, got " + Json.describe(part));
                }
                text.append(part.get("text").textValue());
            }
            return text.toString();
        }
        throw ApiError.invalid(where, where + " must be a string or a list of text parts, got " + Json.describe(content));
    }

    // ------------------------------------------------------------------ sampling

    private static Request sampling(Kind kind, Request request, ObjectNode body) {
        Long maxTokens = Json.optionalInteger(body, "max_completion_tokens");
        String maxTokensField = "max_completion_tokens";
        if (maxTokens == null) {
            maxTokens = Json.optionalInteger(body, "max_tokens");
            maxTokensField = "max_tokens";
        }
        if (maxTokens == null && kind == Kind.COMPLETION) {
            maxTokens = (long) COMPLETIONS_DEFAULT_MAX_TOKENS;
        }
        if (maxTokens != null) {
            if (maxTokens < 1 || maxTokens > Integer.MAX_VALUE) {
                throw ApiError.invalid(maxTokensField, "'" + maxTokensField + "' must be at least 1, got " + maxTokens);
            }
            int tokens = maxTokens.intValue();
            request = checked(request, maxTokensField, r -> r.maxTokens(tokens));
        }
        Double temperature = Json.optionalNumber(body, "temperature");
        double temperatureValue = temperature == null ? DEFAULT_TEMPERATURE : temperature;
        request = checked(request, "temperature", r -> r.temperature(temperatureValue));
        Double topP = Json.optionalNumber(body, "top_p");
        if (topP != null) {
            request = checked(request, "top_p", r -> r.topP(topP));
        }
        Long topK = Json.optionalInteger(body, "top_k");
        if (topK != null) {
            if (topK < -1 || topK > Integer.MAX_VALUE) {
                throw ApiError.invalid("top_k", "'top_k' must be >= 0 (0 or -1: all tokens), got " + topK);
            }
            int k = (int) Math.max(0, topK);
            request = checked(request, "top_k", r -> r.topK(k));
        }
        Long seed = Json.optionalInteger(body, "seed");
        if (seed != null) {
            request = request.seed(seed);
        }
        JsonNode stop = Json.field(body, "stop");
        if (stop != null) {
            String[] strings = stopStrings(stop);
            request = checked(request, "stop", r -> r.stop(strings));
        }
        JsonNode stopTokenIds = Json.field(body, "stop_token_ids");
        if (stopTokenIds != null) {
            if (!stopTokenIds.isArray()) {
                throw ApiError.invalid("stop_token_ids", "'stop_token_ids' must be a list of token ids, got " + Json.describe(stopTokenIds));
            }
            int[] ids = tokenIds(stopTokenIds, "stop_token_ids");
            request = checked(request, "stop_token_ids", r -> r.stopTokenIds(ids));
        }
        Boolean ignoreEos = Json.optionalBoolean(body, "ignore_eos");
        if (ignoreEos != null) {
            request = request.ignoreEos(ignoreEos);
        }
        return request;
    }

    private static String[] stopStrings(JsonNode stop) {
        if (stop.isTextual()) {
            return new String[]{stop.textValue()};
        }
        if (stop.isArray()) {
            String[] strings = new String[stop.size()];
            for (int i = 0; i < strings.length; i++) {
                if (!stop.get(i).isTextual()) {
                    throw ApiError.invalid("stop", "'stop' item " + i + " must be a string, got " + Json.describe(stop.get(i)));
                }
                strings[i] = stop.get(i).textValue();
            }
            return strings;
        }
        throw ApiError.invalid("stop", "'stop' must be a string or a list of strings, got " + Json.describe(stop));
    }

    /** Fields OpenAI defines whose meaning this server cannot give: refused by name, never dropped. */
    private static void refuseUnsupported(Kind kind, ObjectNode body) {
        Long n = Json.optionalInteger(body, "n");
        if (n != null && n != 1) {
            throw ApiError.invalid("n", "'n' must be 1 here (got " + n + "): this server returns one choice per request; send n requests "
                    + "with different seeds instead (they are batched together)");
        }
        nonZero(body, "presence_penalty");
        nonZero(body, "frequency_penalty");
        JsonNode logitBias = Json.field(body, "logit_bias");
        if (logitBias != null && !logitBias.isEmpty()) {
            throw ApiError.invalid("logit_bias", "'logit_bias' is not supported by this server");
        }
        JsonNode logprobs = Json.field(body, "logprobs");
        if (logprobs != null && !(logprobs.isBoolean() && !logprobs.booleanValue())) {
            throw ApiError.invalid("logprobs", "'logprobs' is not supported by this server");
        }
        JsonNode topLogprobs = Json.field(body, "top_logprobs");
        if (topLogprobs != null && !(topLogprobs.isNumber() && topLogprobs.intValue() == 0)) {
            throw ApiError.invalid("top_logprobs", "'top_logprobs' is not supported by this server");
        }
        JsonNode tools = Json.field(body, "tools");
        if (tools != null && !tools.isEmpty()) {
            throw ApiError.invalid("tools", "'tools' (function calling) is not supported by this server");
        }
        JsonNode functions = Json.field(body, "functions");
        if (functions != null && !functions.isEmpty()) {
            throw ApiError.invalid("functions", "'functions' (function calling) is not supported by this server");
        }
        JsonNode responseFormat = Json.field(body, "response_format");
        if (responseFormat != null && !(responseFormat.isObject() && "text".equals(responseFormat.path("type").asText()))) {
            throw ApiError.invalid("response_format", "only 'response_format' {\"type\": \"text\"} is supported by this server");
        }
        if (kind == Kind.COMPLETION) {
            Long bestOf = Json.optionalInteger(body, "best_of");
            if (bestOf != null && bestOf != 1) {
                throw ApiError.invalid("best_of", "'best_of' must be 1 here (got " + bestOf + ")");
            }
            if (Boolean.TRUE.equals(Json.optionalBoolean(body, "echo"))) {
                throw ApiError.invalid("echo", "'echo' is not supported by this server");
            }
            String suffix = Json.optionalString(body, "suffix");
            if (suffix != null && !suffix.isEmpty()) {
                throw ApiError.invalid("suffix", "'suffix' (insertion) is not supported by this server");
            }
        }
    }

    private static void nonZero(ObjectNode body, String name) {
        Double value = Json.optionalNumber(body, name);
        if (value != null && value != 0) {
            throw ApiError.invalid(name, "'" + name + "' is not supported by this server (only 0)");
        }
    }

    // ------------------------------------------------------------------ the engine's own checks, as 400s

    private interface RequestStep {
        Request apply(Request request);
    }

    private static Request checked(Request request, String param, RequestStep step) {
        try {
            return step.apply(request);
        } catch (InvalidRequestException e) {
            throw ApiError.invalid(param, e.getMessage());
        }
    }

    private static Request checked(java.util.function.Supplier<Request> make) {
        try {
            return make.get();
        } catch (InvalidRequestException e) {
            throw ApiError.invalid(e.field(), e.getMessage());
        }
    }
}
