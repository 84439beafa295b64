package org.bitdelta.internal.model;

/**
 * One sequence being decoded: its tenant, the tokens already in the KV cache, and the cache blocks that hold
 * them. {@link #close} returns its blocks and lets its tenant be evicted again. Used under its decoder's lock.
 */
public final class Sequence implements AutoCloseable {
    private final Decoder decoder;
    private final TenantTable.Tenant tenant;
    int[] blockTable = new int[4];
    int blocks;
    int length;
    boolean closed;

    Sequence(Decoder decoder, TenantTable.Tenant tenant) {
        this.decoder = decoder;
        this.tenant = tenant;
    }

    public TenantTable.Tenant tenant() {
        return tenant;
    }

    /** Tokens already in the cache: the position of the next token. */
    public int length() {
        return length;
    }

    /** KV cache blocks it holds. */
    public int blocks() {
        return blocks;
    }

    public boolean isClosed() {
        return closed;
    }

    /** Frees its KV cache blocks; idempotent. */
    @Override
    public void close() {
        decoder.release(this);
    }
}
