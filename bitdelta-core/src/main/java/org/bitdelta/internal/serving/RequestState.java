package org.bitdelta.internal.serving;

import org.bitdelta.inference.Tokenizer;
import org.bitdelta.internal.model.Sequence;

import java.time.Instant;
import java.util.Arrays;

/**
 * One request inside the engine, touched by the engine thread only: its tokens so far (prompt, then generated),
 * its decoder sequence while it runs (null while it waits; a preempted request loses it and recomputes its
 * tokens later), its text state and its timestamps.
 */
final class RequestState {
    final CompletionStream stream;
    final PreparedRequest request;
    final String requestedTenant;
    final long submittedNanos;
    final Instant submittedAt;
    final Detokenizer detokenizer;
    final StopStrings stopStrings;
    final StringBuilder text = new StringBuilder();
    private int[] tokens;
    private int count;
    private long[] tokenNanos = new long[16];
    /** The decoder sequence holding this request's KV cache, or null while it waits. */
    Sequence sequence;
    /** Larger for later admissions: preemption takes the most recently admitted first. */
    long admissionOrder;
    long scheduledNanos = -1;
    /** Whether it was admitted before (its prompt tokens are counted once). */
    boolean admittedBefore;
    /** Whether it ended (its last piece is out). */
    boolean finished;

    RequestState(CompletionStream stream, PreparedRequest request, String requestedTenant, Tokenizer tokenizer, long submittedNanos,
                 Instant submittedAt) {
        this.stream = stream;
        this.request = request;
        this.requestedTenant = requestedTenant;
        this.submittedNanos = submittedNanos;
        this.submittedAt = submittedAt;
        int[] prompt = request.prompt();
        this.tokens = Arrays.copyOf(prompt, prompt.length + Math.min(request.maxTokens(), 256));
        this.count = prompt.length;
        this.detokenizer = new Detokenizer(tokenizer, prompt);
        this.stopStrings = new StopStrings(request.stopStrings());
    }

    int promptLength() {
        return request.prompt().length;
    }

    /** Prompt and generated tokens. */
    int length() {
        return count;
    }

    int generated() {
        return count - promptLength();
    }

    /** Tokens not yet in the KV cache (all of them while waiting); 1 while decoding. */
    int pending() {
        return count - (sequence == null ? 0 : sequence.length());
    }

    /** The next {@code size} tokens not yet in the KV cache. */
    int[] nextChunk(int size) {
        int start = sequence.length();
        return Arrays.copyOfRange(tokens, start, start + size);
    }

    void append(int token, long nanos) {
        if (count == tokens.length) {
            tokens = Arrays.copyOf(tokens, tokens.length * 2);
        }
        int index = generated();
        if (index == tokenNanos.length) {
            tokenNanos = Arrays.copyOf(tokenNanos, tokenNanos.length * 2);
        }
        tokens[count++] = token;
        tokenNanos[index] = nanos;
    }

    int[] generatedTokens() {
        return Arrays.copyOfRange(tokens, promptLength(), count);
    }

    long[] tokenNanos() {
        return Arrays.copyOf(tokenNanos, generated());
    }

    boolean cancelRequested() {
        return stream.cancelRequested();
    }

    /** Frees its KV cache blocks (it must be scheduled again from its first token). */
    void releaseSequence() {
        if (sequence != null) {
            sequence.close();
            sequence = null;
        }
    }
}
