package org.bitdelta.spi;

import java.util.Map;

/**
 * The bytes a {@link DecoderDevice} holds, by purpose, and what its device reports.
 *
 * @param baseBytes      the base model's weights, norms, embeddings and lm_head as held on the device
 * @param tenantBytes    loaded tenant slot → its deltas and replaced tensors as held on the device
 * @param kvCacheBytes   the KV cache
 * @param workspaceBytes activations, scratch and kernel workspaces
 * @param deviceTotal    the device's memory (−1 where it has no such figure, e.g. the Java heap)
 * @param deviceFree     free device memory as the device reports it now (−1 where it has none)
 */
public record MemoryUse(long baseBytes, Map<Integer, Long> tenantBytes, long kvCacheBytes, long workspaceBytes,
                        long deviceTotal, long deviceFree) {
    public MemoryUse {
        tenantBytes = Map.copyOf(tenantBytes);
    }

    public long tenantTotal() {
        return tenantBytes.values().stream().mapToLong(Long::longValue).sum();
    }

    public long total() {
        return baseBytes + tenantTotal() + kvCacheBytes + workspaceBytes;
    }
}
