package org.bitdelta.serving;

import java.time.Duration;
import java.time.Instant;
import java.util.Optional;

/**
 * When a completion's events happened, as {@link System#nanoTime()} readings (comparable with each other and
 * with {@link Piece#nanoTime()}), plus the wall-clock time of submission.
 *
 * @param submittedAt    wall-clock time of {@link Engine#submit}
 * @param submittedNanos {@link Engine#submit}
 * @param scheduledNanos when it first joined the running batch; −1 if it never did
 * @param tokenNanos     when each generated token was sampled (the end of its step), in order
 * @param finishedNanos  when it ended
 */
public record Timings(Instant submittedAt, long submittedNanos, long scheduledNanos, long[] tokenNanos, long finishedNanos) {
    public Timings {
        tokenNanos = tokenNanos.clone();
    }

    @Override
    public long[] tokenNanos() {
        return tokenNanos.clone();
    }

    /** From submission to joining the batch (to the end, if it never joined). */
    public Duration queueTime() {
        return Duration.ofNanos((scheduledNanos >= 0 ? scheduledNanos : finishedNanos) - submittedNanos);
    }

    /** From submission to the first generated token; empty when none was generated. */
    public Optional<Duration> timeToFirstToken() {
        return tokenNanos.length == 0 ? Optional.empty() : Optional.of(Duration.ofNanos(tokenNanos[0] - submittedNanos));
    }

    /** The gaps between consecutive tokens (one fewer than the tokens), for inter-token latency. */
    public Duration[] interTokenLatencies() {
        Duration[] gaps = new Duration[Math.max(0, tokenNanos.length - 1)];
        for (int i = 0; i < gaps.length; i++) {
            gaps[i] = Duration.ofNanos(tokenNanos[i + 1] - tokenNanos[i]);
        }
        return gaps;
    }

    /** From submission to the end. */
    public Duration total() {
        return Duration.ofNanos(finishedNanos - submittedNanos);
    }
}
