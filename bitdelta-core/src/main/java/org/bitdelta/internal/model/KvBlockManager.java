package org.bitdelta.internal.model;

import org.bitdelta.BitDeltaException;

import java.util.ArrayDeque;
import java.util.Arrays;

/**
 * Hands out the KV cache's fixed-size blocks to sequences (vLLM's block manager, small): a sequence's block table
 * lists its blocks in position order; position p lives in block table[p / blockSize] at offset p % blockSize.
 * Blocks return to the free list when their sequence is released. Not thread-safe: the decoder's step lock
 * guards it.
 */
public final class KvBlockManager {
    private final int blockSize;
    private final int blockCount;
    private final ArrayDeque<Integer> free = new ArrayDeque<>();

    public KvBlockManager(int blockSize, int blockCount) {
        if (blockSize < 1 || blockCount < 1) {
            throw new IllegalArgumentException("block size " + blockSize + " and block count " + blockCount + " must be positive");
        }
        this.blockSize = blockSize;
        this.blockCount = blockCount;
        for (int block = 0; block < blockCount; block++) {
            free.addLast(block);
        }
    }

    public int blockSize() {
        return blockSize;
    }

    public int blockCount() {
        return blockCount;
    }

    public int freeBlocks() {
        return free.size();
    }

    public int usedBlocks() {
        return blockCount - free.size();
    }

    /** Blocks needed to hold {@code tokens} tokens. */
    public int blocksFor(int tokens) {
        return (tokens + blockSize - 1) / blockSize;
    }

    /** Whether {@code extraTokens} more tokens fit in a sequence that now holds {@code tokens} (in {@code blocks} blocks). */
    public boolean canGrow(int blocks, int tokens, int extraTokens) {
        return blocksFor(tokens + extraTokens) - blocks <= free.size();
    }

    /**
     * Grows {@code table} (its first {@code blocks} entries used) so that it holds {@code tokens} tokens; returns
     * the (possibly reallocated) table. Fails, changing nothing, when the cache has too few free blocks.
     */
    public int[] grow(int[] table, int blocks, int tokens) {
        int needed = blocksFor(tokens);
        if (needed <= blocks) {
            return table;
        }
        if (needed - blocks > free.size()) {
            throw new BitDeltaException("the KV cache is full: a sequence of " + tokens + " tokens needs " + (needed - blocks)
                    + " more blocks of " + blockSize + " tokens, " + free.size() + " of " + blockCount + " are free");
        }
        int[] grown = table.length >= needed ? table : Arrays.copyOf(table, Math.max(needed, table.length * 2));
        for (int i = blocks; i < needed; i++) {
            grown[i] = free.removeFirst();
        }
        return grown;
    }

    /** Returns the first {@code blocks} entries of {@code table} to the free list. */
    public void release(int[] table, int blocks) {
        for (int i = 0; i < blocks; i++) {
            free.addLast(table[i]);
        }
    }
}
