package org.bitdelta.internal.model;

/**
 * The sizes a decoder allocates once on its device.
 *
 * @param maxRows           tokens one step may run (longer work is split into several steps)
 * @param kvBlockSize       tokens per KV cache block
 * @param kvCacheTokens     tokens the KV cache holds across all open sequences
 * @param tenantSlots       tenants resident at once, plus one (slot 0 is the base)
 * @param tenantBudgetBytes device bytes the resident tenants may hold together (Long.MAX_VALUE: no limit)
 */
public record DecoderOptions(int maxRows, int kvBlockSize, int kvCacheTokens, int tenantSlots, long tenantBudgetBytes) {
    public DecoderOptions {
        if (maxRows < 1 || kvBlockSize < 1 || kvCacheTokens < 1 || tenantSlots < 2 || tenantBudgetBytes < 0) {
            throw new IllegalArgumentException("decoder options must be positive (tenant slots at least 2): maxRows " + maxRows
                    + ", kvBlockSize " + kvBlockSize + ", kvCacheTokens " + kvCacheTokens + ", tenantSlots " + tenantSlots
                    + ", tenantBudgetBytes " + tenantBudgetBytes);
        }
    }

    /**
     * Defaults for a model of context {@code contextLength}: 1024 rows per step, blocks of 16 tokens, a KV cache
     * of 4096 tokens or four contexts (whichever is more), 64 tenant slots, no tenant budget.
     */
    public static DecoderOptions defaults(int contextLength) {
        return new DecoderOptions(1024, 16, Math.max(4096, 4 * contextLength), 65, Long.MAX_VALUE);
    }

    public DecoderOptions withMaxRows(int rows) {
        return new DecoderOptions(rows, kvBlockSize, kvCacheTokens, tenantSlots, tenantBudgetBytes);
    }

    public DecoderOptions withKvCacheTokens(int tokens) {
        return new DecoderOptions(maxRows, kvBlockSize, tokens, tenantSlots, tenantBudgetBytes);
    }

    public DecoderOptions withKvBlockSize(int size) {
        return new DecoderOptions(maxRows, size, kvCacheTokens, tenantSlots, tenantBudgetBytes);
    }

    public DecoderOptions withTenantSlots(int slots) {
        return new DecoderOptions(maxRows, kvBlockSize, kvCacheTokens, slots, tenantBudgetBytes);
    }

    public DecoderOptions withTenantBudgetBytes(long bytes) {
        return new DecoderOptions(maxRows, kvBlockSize, kvCacheTokens, tenantSlots, bytes);
    }
}
