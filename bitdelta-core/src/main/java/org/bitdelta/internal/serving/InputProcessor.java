package org.bitdelta.internal.serving;

import org.bitdelta.inference.Tokenizer;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.ModelConfig;
import org.bitdelta.internal.model.TenantTable;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.serving.Request;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Checks a request against the model and turns its prompt into token ids, on the submitting thread (so a bad
 * request fails its caller at once and the engine thread only runs steps): the tenant must be loaded; a chat is
 * rendered by the chat template; the prompt must fit the context with room for one token and fit the KV cache
 * with its completion; token ids must be in the vocabulary; max_tokens is clamped to the context.
 */
final class InputProcessor {
    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final ChatTemplate template;
    private final String baseAlias;
    private final int[] endTokens;
    private final String folder;

    /** @param tokenizer null when the model folder has none (then only token prompts are accepted) */
    InputProcessor(Decoder decoder, Tokenizer tokenizer, ChatTemplate template, String baseAlias, int[] endTokens, String folder) {
        this.decoder = decoder;
        this.tokenizer = tokenizer;
        this.template = template;
        this.baseAlias = baseAlias;
        this.endTokens = endTokens.clone();
        this.folder = folder;
    }

    /** The decoder's name for a requested tenant: the base alias is "base". */
    String resolve(String tenant) {
        return tenant.equals(baseAlias) ? TenantTable.BASE : tenant;
    }

    /** "base", the alias, then the loaded tenants. */
    List<String> tenantNames() {
        List<String> names = new ArrayList<>(decoder.tenantNames());
        if (baseAlias != null) {
            names.add(1, baseAlias);
        }
        return names;
    }

    PreparedRequest prepare(Request request) {
        ModelConfig config = decoder.config();
        String tenant = resolve(request.tenant());
        if (!decoder.hasTenant(tenant)) {
            throw new InvalidRequestException("tenant", "tenant '" + request.tenant() + "' is not loaded (loaded: " + tenantNames() + ")");
        }
        int[] prompt = promptTokens(request);
        int vocabulary = config.vocabularySize();
        for (int token : prompt) {
            if (token < 0 || token >= vocabulary) {
                throw new InvalidRequestException("prompt", "the prompt has token id " + token + ", outside the vocabulary [0, " + vocabulary + ")");
            }
        }
        int context = config.contextLength();
        if (prompt.length >= context) {
            throw new InvalidRequestException("prompt", "the prompt has " + prompt.length + " tokens; the model's context is " + context
                    + " tokens (" + config.configFile() + ": max_position_embeddings), which leaves no room for a completion");
        }
        int room = context - prompt.length;
        int maxTokens = request.maxTokens().orElse(room);
        boolean clamped = maxTokens >= room;
        maxTokens = Math.min(maxTokens, room);
        int blockSize = decoder.spec().kvBlockSize();
        long cacheTokens = (long) decoder.kvBlockUse()[1] * blockSize;
        long needed = ((long) prompt.length + maxTokens + blockSize - 1) / blockSize * blockSize;
        if (needed > cacheTokens) {
            throw new InvalidRequestException(request.maxTokens().isPresent() ? "max_tokens" : "prompt", "the prompt (" + prompt.length
                    + " tokens) with max_tokens " + maxTokens + " needs " + needed + " tokens of KV cache, more than the whole cache holds ("
                    + cacheTokens + " tokens, EngineOptions.kvCacheTokens); lower max_tokens or enlarge the cache");
        }
        int[] stopTokens = request.stopTokenIds();
        for (int token : stopTokens) {
            if (token >= vocabulary) {
                throw new InvalidRequestException("stop_token_ids", "stop token id " + token + " is outside the vocabulary [0, " + vocabulary + ")");
            }
        }
        if (!request.stop().isEmpty() && tokenizer == null) {
            throw new InvalidRequestException("stop", folder + " has no tokenizer.json, so completions have no text to find stop strings in;"
                    + " use stop_token_ids");
        }
        long seed = request.seed().orElseGet(() -> ThreadLocalRandom.current().nextLong());
        return new PreparedRequest(tenant, prompt, maxTokens, clamped, (float) request.temperature(), request.topK(), (float) request.topP(),
                seed, request.ignoreEos() ? new int[0] : endTokens, stopTokens, request.stop());
    }

    private int[] promptTokens(Request request) {
        if (request.tokenIds() != null) {
            return request.tokenIds();
        }
        if (tokenizer == null) {
            throw new InvalidRequestException(request.text() != null ? "prompt" : "messages", folder
                    + " has no tokenizer.json, so it takes prompts as token ids only (Request.tokens)");
        }
        int[] tokens;
        if (request.text() != null) {
            tokens = tokenizer.encode(request.text());
        } else {
            ChatTemplate.Rendered rendered = template.render(request.messages(), true);
            tokens = rendered.addSpecialTokens() ? tokenizer.encode(rendered.text()) : tokenizer.encodeWithoutSpecialTokens(rendered.text());
        }
        if (tokens.length == 0) {
            throw new InvalidRequestException(request.text() != null ? "prompt" : "messages", "the prompt has no tokens once tokenized");
        }
        return tokens;
    }
}
