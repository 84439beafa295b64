package org.bitdelta.internal.serving;

import org.bitdelta.internal.model.Sequence;

/**
 * The scheduler's count of free KV cache blocks while it plans one step: each request it schedules takes the
 * blocks its new tokens need, each request it preempts gives its blocks back. Mirrors what the decoder's block
 * manager will do when the step runs, so the step never finds the cache full.
 */
final class KvBlockBudget {
    private final int blockSize;
    private final int totalBlocks;
    private int free;

    KvBlockBudget(int blockSize, int totalBlocks, int free) {
        this.blockSize = blockSize;
        this.totalBlocks = totalBlocks;
        this.free = free;
    }

    int blocksFor(int tokens) {
        return (tokens + blockSize - 1) / blockSize;
    }

    /** Blocks {@code sequence} (null: a new one) needs for {@code extraTokens} more tokens. */
    int needed(Sequence sequence, int extraTokens) {
        int length = sequence == null ? 0 : sequence.length();
        int held = sequence == null ? 0 : sequence.blocks();
        return Math.max(0, blocksFor(length + extraTokens) - held);
    }

    int free() {
        return free;
    }

    int totalBlocks() {
        return totalBlocks;
    }

    void take(int blocks) {
        if (blocks > free) {
            throw new IllegalStateException(blocks + " blocks taken but only " + free + " free");
        }
        free -= blocks;
    }

    void giveBack(int blocks) {
        free += blocks;
    }
}
