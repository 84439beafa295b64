package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.Sequence;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Generates continuations for a batch of requests, each with its own tenant, in one batch per step: all prompts
 * are prefilled in one forward pass, then every unfinished sequence advances one token per pass through its KV
 * cache. Greedy at temperature 0 (ties go to the lowest token id, like argmax); otherwise sampled from
 * softmax(logits / temperature) with the request's own seed, so a request's output does not depend on what
 * else is in the batch.
 */
public final class Generator {
    private final DecoderModel model;

    public Generator(DecoderModel model) {
        this.model = Objects.requireNonNull(model, "model");
    }

    /**
     * @param tenant       {@link DecoderModel#BASE} or a loaded tenant's name
     * @param prompt       token ids (BOS included where the model wants one); at least one
     * @param maxNewTokens tokens to generate at most
     * @param temperature  0 for greedy decoding, else the softmax temperature
     * @param seed         seeds this request's sampler (unused when greedy)
     */
    public record Request(String tenant, int[] prompt, int maxNewTokens, double temperature, long seed) {
        public Request {
            Objects.requireNonNull(tenant, "tenant");
            prompt = prompt.clone();
            if (maxNewTokens < 0) {
                throw new IllegalArgumentException("maxNewTokens must be >= 0, got " + maxNewTokens);
            }
            if (!(temperature >= 0) || Double.isInfinite(temperature)) {
                throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
            }
        }

        /** A greedy request. */
        public static Request greedy(String tenant, int[] prompt, int maxNewTokens) {
            return new Request(tenant, prompt, maxNewTokens, 0, 0);
        }

        @Override
        public int[] prompt() {
            return prompt.clone();
        }
    }

    /** Why a sequence stopped. */
    public enum FinishReason {
        /** maxNewTokens were generated. */
        LENGTH,
        /** The model produced one of its eos_token_id tokens (included in the output). */
        END_OF_SEQUENCE,
        /** The sequence reached the model's context length. */
        CONTEXT_FULL,
        /** The tenant was removed while the sequence was running; the tokens so far are kept. */
        TENANT_REMOVED
    }

    /** A request's outcome: the generated tokens (prompt not included) and why it stopped. */
    public record Result(String tenant, int[] tokens, FinishReason finishReason) {
        public Result {
            tokens = tokens.clone();
        }

        @Override
        public int[] tokens() {
            return tokens.clone();
        }
    }

    /** Called for every generated token, from the generating thread, in order per request. */
    @FunctionalInterface
    public interface TokenListener {
        void onToken(int request, int token);
    }

    public List<Result> generate(List<Request> requests) {
        return generate(requests, (request, token) -> {
        });
    }

    /**
     * Runs all requests to completion in one batch. Every request is checked (tenant loaded, prompt within the
     * context and vocabulary) before anything runs, so a bad request fails the call without side effects.
     */
    public List<Result> generate(List<Request> requests, TokenListener listener) {
        Decoder decoder = model.decoder();
        int context = model.contextLength();
        int vocabulary = model.vocabularySize();
        int count = requests.size();
        Sequence[] sequences = new Sequence[count];
        try {
            for (int i = 0; i < count; i++) {
                Request request = requests.get(i);
                if (request.prompt.length == 0) {
                    throw new BitDeltaException("request " + i + " (tenant '" + request.tenant + "') has an empty prompt");
                }
                if (request.prompt.length > context) {
                    throw new BitDeltaException("request " + i + " (tenant '" + request.tenant + "') has a prompt of " + request.prompt.length
                            + " tokens, longer than the model's context of " + context + " (max_position_embeddings)");
                }
                for (int token : request.prompt) {
                    if (token < 0 || token >= vocabulary) {
                        throw new BitDeltaException("request " + i + " has token id " + token + " outside the vocabulary [0, " + vocabulary + ")");
                    }
                }
                sequences[i] = decoder.newSequence(request.tenant); // throws, naming the loaded ones, for an unknown tenant
            }
            int[] endTokens = model.eosTokenIds();
            SplittableRandom[] samplers = new SplittableRandom[count];
            int[][] generated = new int[count][];
            int[] generatedCount = new int[count];
            FinishReason[] finish = new FinishReason[count];
            int[][] nextInput = new int[count][];
            for (int i = 0; i < count; i++) {
                Request request = requests.get(i);
                samplers[i] = new SplittableRandom(request.seed);
                generated[i] = new int[request.maxNewTokens];
                nextInput[i] = request.prompt;
                if (request.maxNewTokens == 0) {
                    finish[i] = FinishReason.LENGTH;
                }
            }
            while (true) {
                List<Integer> active = new ArrayList<>();
                for (int i = 0; i < count; i++) {
                    if (finish[i] == null) {
                        active.add(i);
                    }
                }
                if (active.isEmpty()) {
                    break;
                }
                List<Sequence> batch = active.stream().map(i -> sequences[i]).toList();
                List<int[]> inputs = active.stream().map(i -> nextInput[i]).toList();
                List<float[]> logits = decoder.forward(batch, inputs, false);
                for (int a = 0; a < active.size(); a++) {
                    int i = active.get(a);
                    if (logits.get(a) == null) {
                        finish[i] = FinishReason.TENANT_REMOVED;
                        continue;
                    }
                    int token = sample(logits.get(a), requests.get(i).temperature, samplers[i]);
                    generated[i][generatedCount[i]++] = token;
                    listener.onToken(i, token);
                    if (contains(endTokens, token)) {
                        finish[i] = FinishReason.END_OF_SEQUENCE;
                    } else if (generatedCount[i] == requests.get(i).maxNewTokens) {
                        finish[i] = FinishReason.LENGTH;
                    } else if (sequences[i].length() >= context) {
                        finish[i] = FinishReason.CONTEXT_FULL;
                    } else {
                        nextInput[i] = new int[]{token};
                    }
                }
            }
            List<Result> results = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                results.add(new Result(requests.get(i).tenant, Arrays.copyOf(generated[i], generatedCount[i]), finish[i]));
            }
            return results;
        } finally {
            for (Sequence sequence : sequences) {
                if (sequence != null) {
                    sequence.close();
                }
            }
        }
    }

    private static boolean contains(int[] values, int value) {
        for (int candidate : values) {
            if (candidate == value) {
                return true;
            }
        }
        return false;
    }

    /** Argmax at temperature 0 (first maximum), else a draw from softmax(logits / temperature). */
    static int sample(float[] logits, double temperature, SplittableRandom random) {
        int best = 0;
        for (int v = 1; v < logits.length; v++) {
            if (logits[v] > logits[best]) {
                best = v;
            }
        }
        if (temperature == 0) {
            return best;
        }
        double max = logits[best];
        double[] weights = new double[logits.length];
        double sum = 0;
        for (int v = 0; v < logits.length; v++) {
            weights[v] = Math.exp((logits[v] - max) / temperature);
            sum += weights[v];
        }
        double target = random.nextDouble() * sum;
        double cumulative = 0;
        for (int v = 0; v < logits.length; v++) {
            cumulative += weights[v];
            if (target < cumulative) {
                return v;
            }
        }
        return best; // rounding left target at the very top of the sum
    }
}
