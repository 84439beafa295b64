package org.bitdelta.internal.serving;

import java.util.List;

/**
 * What one engine step runs: for each request its next tokens (one while decoding, a chunk of its prompt while
 * prefilling) and whether a token is sampled after them (when they reach the end of its sequence).
 */
record ScheduledStep(List<Entry> entries, int rows) {

    record Entry(RequestState state, int[] chunk, boolean sample) {
    }

    boolean isEmpty() {
        return entries.isEmpty();
    }
}
