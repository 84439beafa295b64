package org.bitdelta.internal.serving;

import org.bitdelta.internal.model.Decoder;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Continuous batching (vLLM's scheduler, small). Requests wait in a queue and run in a batch that changes between
 * steps. Each step, within {@code maxRows} tokens and {@code prefillBudget} prompt tokens:
 * <ol>
 *   <li>every decoding request gets its next token, oldest admission first;</li>
 *   <li>requests still prefilling get their next prompt chunk, oldest first;</li>
 *   <li>waiting requests join, first in first out (preempted ones at the front), while fewer than
 *       {@code maxRunning} run and the KV cache has room for their whole sequence so far plus one token, each
 *       with its first chunk.</li>
 * </ol>
 * A long prompt is thus prefilled over several steps while the others keep decoding. When a running request's
 * next tokens do not fit in the KV cache, the most recently admitted request not yet in this step is preempted
 * by recompute: its blocks are freed and it waits at the front of the queue with its generated tokens, which are
 * run again as a prompt when it rejoins (its answer does not change: the decoder's rows are batch-invariant and
 * sampling depends on the request's seed and token index only). Not thread-safe: the engine thread owns it.
 */
final class Scheduler {
    /** What the engine does when requests change state. */
    interface Events {
        /** It joined the running batch (its sequence is open). */
        void admitted(RequestState state);

        /** It was preempted: back to the front of the queue, its blocks freed. */
        void preempted(RequestState state);

        /** Its sequence could not be opened (its tenant was removed meanwhile): it must end. */
        void admissionFailed(RequestState state, RuntimeException error);
    }

    private final Decoder decoder;
    private final int maxRunning;
    private final int maxRows;
    private final int prefillBudget;
    private final Events events;
    private final ArrayDeque<RequestState> waiting = new ArrayDeque<>();
    /** In admission order. */
    private final List<RequestState> running = new ArrayList<>();
    private long admissions;

    Scheduler(Decoder decoder, int maxRunning, int maxRows, int prefillBudget, Events events) {
        this.decoder = decoder;
        this.maxRunning = maxRunning;
        this.maxRows = maxRows;
        this.prefillBudget = prefillBudget;
        this.events = events;
    }

    void addWaiting(RequestState state) {
        waiting.addLast(state);
    }

    boolean hasWork() {
        return !running.isEmpty() || !waiting.isEmpty();
    }

    List<RequestState> running() {
        return Collections.unmodifiableList(running);
    }

    /** Waiting and running requests, for cancellation checks and shutdown. */
    List<RequestState> all() {
        List<RequestState> all = new ArrayList<>(running);
        all.addAll(waiting);
        return all;
    }

    /** Takes a request out (it ended); its sequence is the caller's to release. Returns whether it was running. */
    boolean remove(RequestState state) {
        if (running.remove(state)) {
            return true;
        }
        waiting.remove(state);
        return false;
    }

    ScheduledStep schedule() {
        int[] blockUse = decoder.kvBlockUse();
        KvBlockBudget budget = new KvBlockBudget(decoder.spec().kvBlockSize(), blockUse[1], blockUse[1] - blockUse[0]);
        List<ScheduledStep.Entry> entries = new ArrayList<>();
        Set<RequestState> planned = Collections.newSetFromMap(new IdentityHashMap<>());
        int rows = 0;
        int prefill = 0;
        // 1. Decoding requests: one token each.
        for (RequestState state : new ArrayList<>(running)) {
            if (rows == maxRows) {
                break;
            }
            if (state.sequence == null || state.pending() != 1 || !reserve(state, 1, budget, planned)) {
                continue;
            }
            entries.add(new ScheduledStep.Entry(state, state.nextChunk(1), true));
            planned.add(state);
            rows++;
        }
        // 2. Requests still prefilling: their next chunk.
        for (RequestState state : new ArrayList<>(running)) {
            int chunk = Math.min(Math.min(maxRows - rows, prefillBudget - prefill), state.sequence == null ? 0 : state.pending());
            if (chunk <= 0 || planned.contains(state) || state.pending() == 1 || !reserve(state, chunk, budget, planned)) {
                continue;
            }
            entries.add(new ScheduledStep.Entry(state, state.nextChunk(chunk), chunk == state.pending()));
            planned.add(state);
            rows += chunk;
            prefill += chunk;
        }
        // 3. Waiting requests join while there is room.
        while (!waiting.isEmpty() && running.size() < maxRunning && rows < maxRows && prefill < prefillBudget) {
            RequestState state = waiting.peekFirst();
            int pending = state.pending();
            if (budget.blocksFor(pending + 1) > budget.free()) {
                break; // the KV cache is full for now: it waits for blocks to come free
            }
            waiting.pollFirst();
            try {
                state.sequence = decoder.newSequence(state.request.tenant());
            } catch (RuntimeException e) {
                events.admissionFailed(state, e);
                continue;
            }
            state.admissionOrder = ++admissions;
            running.add(state);
            events.admitted(state);
            int chunk = Math.min(Math.min(maxRows - rows, prefillBudget - prefill), pending);
            budget.take(budget.needed(state.sequence, chunk));
            entries.add(new ScheduledStep.Entry(state, state.nextChunk(chunk), chunk == pending));
            planned.add(state);
            rows += chunk;
            prefill += chunk;
        }
        return new ScheduledStep(entries, rows);
    }

    /**
     * Takes the blocks {@code state} needs for {@code tokens} more tokens, preempting the most recently admitted
     * running requests not yet planned in this step until they fit. Returns false when {@code state} itself had to
     * be preempted.
     */
    private boolean reserve(RequestState state, int tokens, KvBlockBudget budget, Set<RequestState> planned) {
        int needed = budget.needed(state.sequence, tokens);
        while (needed > budget.free()) {
            RequestState victim = null;
            for (RequestState candidate : running) {
                if (!planned.contains(candidate) && (victim == null || candidate.admissionOrder > victim.admissionOrder)) {
                    victim = candidate;
                }
            }
            if (victim == null) {
                return false;
            }
            budget.giveBack(victim.sequence.blocks());
            preempt(victim);
            if (victim == state) {
                return false;
            }
        }
        budget.take(needed);
        return true;
    }

    private void preempt(RequestState state) {
        running.remove(state);
        state.releaseSequence();
        waiting.addFirst(state);
        events.preempted(state);
    }
}
