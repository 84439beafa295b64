package org.bitdelta.serving;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * What to generate: the tenant, the prompt (text, chat messages or token ids), how to sample and when to stop.
 * Immutable; every setter returns a copy, and checks its value at once (an {@link InvalidRequestException}
 * naming the field). What depends on the model (the tenant, the prompt's length against the context, token ids
 * against the vocabulary) is checked by {@link Engine#submit}.
 *
 * <pre>{@code
 * Request.chat("alice", List.of(ChatMessage.user("Tell me a story")))
 *        .maxTokens(64).temperature(0.7).topP(0.9).seed(1).stop("\n\n");
 * }</pre>
 *
 * Defaults: greedy decoding (temperature 0: argmax, ties to the lowest token id), top_p 1, top_k 0 (all tokens),
 * max_tokens up to the context length, a random seed per request when sampling without one, no stop strings, and
 * the model's end-of-sequence tokens (generation_config.json, else config.json) end the completion.
 */
public final class Request {
    /** OpenAI's upper bound for the temperature. */
    public static final double MAX_TEMPERATURE = 2.0;

    private final String tenant;
    private final String text;
    private final List<ChatMessage> messages;
    private final int[] tokenIds;
    private final Integer maxTokens;
    private final double temperature;
    private final double topP;
    private final int topK;
    private final Long seed;
    private final List<String> stop;
    private final int[] stopTokenIds;
    private final boolean ignoreEos;

    private Request(String tenant, String text, List<ChatMessage> messages, int[] tokenIds, Integer maxTokens, double temperature,
                    double topP, int topK, Long seed, List<String> stop, int[] stopTokenIds, boolean ignoreEos) {
        this.tenant = tenant;
        this.text = text;
        this.messages = messages;
        this.tokenIds = tokenIds;
        this.maxTokens = maxTokens;
        this.temperature = temperature;
        this.topP = topP;
        this.topK = topK;
        this.seed = seed;
        this.stop = stop;
        this.stopTokenIds = stopTokenIds;
        this.ignoreEos = ignoreEos;
    }

    private static Request of(String tenant, String text, List<ChatMessage> messages, int[] tokenIds) {
        return new Request(requireTenant(tenant), text, messages, tokenIds, null, 0, 1, 0, null, List.of(), new int[0], false);
    }

    /**
     * A completion of {@code prompt}, tokenized as the model's tokenizer does for plain text (with its special
     * tokens: BOS first for Llama tokenizers).
     */
    public static Request text(String tenant, String prompt) {
        Objects.requireNonNull(prompt, "prompt");
        if (prompt.isEmpty()) {
            throw new InvalidRequestException("prompt", "the prompt is empty");
        }
        return of(tenant, prompt, null, null);
    }

    /**
     * A reply to {@code messages}, rendered by the model's chat template with the generation prompt added (see
     * {@link EngineOptions#chatTemplate} for where the template comes from and the plain format of models
     * without one).
     */
    public static Request chat(String tenant, List<ChatMessage> messages) {
        List<ChatMessage> copy = List.copyOf(Objects.requireNonNull(messages, "messages"));
        if (copy.isEmpty()) {
            throw new InvalidRequestException("messages", "a chat request needs at least one message");
        }
        return of(tenant, null, copy, null);
    }

    /** A continuation of these token ids, used as they are (no special tokens added). */
    public static Request tokens(String tenant, int... tokenIds) {
        Objects.requireNonNull(tokenIds, "tokenIds");
        if (tokenIds.length == 0) {
            throw new InvalidRequestException("prompt", "the prompt has no tokens");
        }
        return of(tenant, null, null, tokenIds.clone());
    }

    private static String requireTenant(String tenant) {
        Objects.requireNonNull(tenant, "tenant");
        if (tenant.isBlank()) {
            throw new InvalidRequestException("tenant", "the tenant name is blank");
        }
        return tenant;
    }

    /**
     * Tokens to generate at most (≥ 1). The completion also ends, with finish reason {@link FinishReason#LENGTH},
     * where prompt + completion reach the model's context length: max_tokens beyond it are not refused but clamped,
     * as OpenAI-style servers do. Default: up to the context length.
     */
    public Request maxTokens(int tokens) {
        if (tokens < 1) {
            throw new InvalidRequestException("max_tokens", "max_tokens must be at least 1, got " + tokens);
        }
        return new Request(tenant, text, messages, tokenIds, tokens, temperature, topP, topK, seed, stop, stopTokenIds, ignoreEos);
    }

    /** Sampling temperature in [0, 2] (OpenAI's range); 0 is greedy decoding. Default 0. */
    public Request temperature(double value) {
        if (!(value >= 0 && value <= MAX_TEMPERATURE)) {
            throw new InvalidRequestException("temperature", "temperature must be in [0, " + MAX_TEMPERATURE + "], got " + value);
        }
        return new Request(tenant, text, messages, tokenIds, maxTokens, value, topP, topK, seed, stop, stopTokenIds, ignoreEos);
    }

    /** Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches p, in (0, 1]. Default 1. */
    public Request topP(double p) {
        if (!(p > 0 && p <= 1)) {
            throw new InvalidRequestException("top_p", "top_p must be in (0, 1], got " + p);
        }
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, p, topK, seed, stop, stopTokenIds, ignoreEos);
    }

    /** Keep the k most likely tokens (0: all). Default 0. */
    public Request topK(int k) {
        if (k < 0) {
            throw new InvalidRequestException("top_k", "top_k must be >= 0 (0: all tokens), got " + k);
        }
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, topP, k, seed, stop, stopTokenIds, ignoreEos);
    }

    /**
     * The sampler's seed: token i of the completion is drawn with a uniform number that depends on (seed, i) only,
     * so the same request gives the same tokens whatever runs beside it. Default: a random seed per request.
     */
    public Request seed(long value) {
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, topP, topK, value, stop, stopTokenIds, ignoreEos);
    }

    /** Stop strings: the completion ends before the first of them to appear, which is not part of the text. */
    public Request stop(String... strings) {
        List<String> list = List.of(strings);
        for (String string : list) {
            if (string.isEmpty()) {
                throw new InvalidRequestException("stop", "a stop string is empty");
            }
        }
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, topP, topK, seed, list, stopTokenIds, ignoreEos);
    }

    /** Token ids that end the completion, like end-of-sequence tokens (kept in the tokens, not in the text). */
    public Request stopTokenIds(int... ids) {
        for (int id : ids) {
            if (id < 0) {
                throw new InvalidRequestException("stop_token_ids", "stop token ids must be >= 0, got " + id);
            }
        }
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, topP, topK, seed, stop, ids.clone(), ignoreEos);
    }

    /** Whether to go on past the model's end-of-sequence tokens (for benchmarks: always max_tokens). Default false. */
    public Request ignoreEos(boolean ignore) {
        return new Request(tenant, text, messages, tokenIds, maxTokens, temperature, topP, topK, seed, stop, stopTokenIds, ignore);
    }

    public String tenant() {
        return tenant;
    }

    /** The text prompt, or null for chat and token requests. */
    public String text() {
        return text;
    }

    /** The chat messages, or null for text and token requests. */
    public List<ChatMessage> messages() {
        return messages;
    }

    /** The prompt's token ids, or null for text and chat requests. */
    public int[] tokenIds() {
        return tokenIds == null ? null : tokenIds.clone();
    }

    public OptionalInt maxTokens() {
        return maxTokens == null ? OptionalInt.empty() : OptionalInt.of(maxTokens);
    }

    public double temperature() {
        return temperature;
    }

    public double topP() {
        return topP;
    }

    public int topK() {
        return topK;
    }

    public OptionalLong seed() {
        return seed == null ? OptionalLong.empty() : OptionalLong.of(seed);
    }

    public List<String> stop() {
        return stop;
    }

    public int[] stopTokenIds() {
        return stopTokenIds.clone();
    }

    public boolean ignoreEos() {
        return ignoreEos;
    }

    @Override
    public String toString() {
        String prompt = text != null ? "text of " + text.length() + " chars" : messages != null ? messages.size() + " messages"
                : tokenIds.length + " tokens";
        return "Request[tenant=" + tenant + ", " + prompt + ", max_tokens=" + (maxTokens == null ? "context" : maxTokens)
                + ", temperature=" + temperature + ", top_p=" + topP + ", top_k=" + topK + (seed == null ? "" : ", seed=" + seed)
                + (stop.isEmpty() ? "" : ", stop=" + stop) + (stopTokenIds.length == 0 ? "" : ", stop_token_ids=" + Arrays.toString(stopTokenIds))
                + (ignoreEos ? ", ignore_eos" : "") + "]";
    }
}
