package org.bitdelta.serving;

import org.bitdelta.spi.MemoryUse;

import java.util.List;
import java.util.Map;

/**
 * A snapshot of an engine, for metrics (gauges and counters as Prometheus names them).
 *
 * @param running             requests in the running batch
 * @param waiting             requests waiting to run (new ones and preempted ones)
 * @param maxRunning          {@link EngineOptions#maxRunning}
 * @param maxWaiting          {@link EngineOptions#maxWaiting}
 * @param lastStepSequences   requests in the last step (its batch size)
 * @param lastStepRows        tokens the last step ran (decode tokens plus prompt chunk tokens)
 * @param steps               steps run so far (counter)
 * @param kvBlocksUsed        KV cache blocks in use
 * @param kvBlocksTotal       KV cache blocks in all
 * @param kvBlockSize         tokens per block
 * @param preemptions         running requests preempted to free KV blocks so far (counter)
 * @param requestsSubmitted   requests accepted by {@link Engine#submit} so far (counter)
 * @param requestsFinished    requests ended so far, by reason (counters)
 * @param promptTokens        prompt tokens of admitted requests so far, recomputed ones not counted again (counter)
 * @param generatedTokens     tokens generated so far (counter)
 * @param tenants             per tenant, the base first
 * @param memory              what the device holds, by purpose; null once the engine is closed
 * @param closed              whether the engine is closed (or stopped after an internal error)
 */
public record EngineStats(int running, int waiting, int maxRunning, int maxWaiting, int lastStepSequences, int lastStepRows, long steps,
                          int kvBlocksUsed, int kvBlocksTotal, int kvBlockSize, long preemptions, long requestsSubmitted,
                          Map<FinishReason, Long> requestsFinished, long promptTokens, long generatedTokens, List<TenantStats> tenants,
                          MemoryUse memory, boolean closed) {
    public EngineStats {
        requestsFinished = Map.copyOf(requestsFinished);
        tenants = List.copyOf(tenants);
    }

    /**
     * One tenant.
     *
     * @param name        its name ({@link Engine#BASE} for the base)
     * @param bytes       bytes of its own data (packed signs, scales, replaced tensors); 0 for the base
     * @param deviceBytes device bytes it holds while resident (0 when evicted or never used)
     * @param resident    whether it is loaded on the device now (always true for the base)
     * @param running     its requests in the running batch
     * @param waiting     its requests waiting
     */
    public record TenantStats(String name, long bytes, long deviceBytes, boolean resident, int running, int waiting) {
    }
}
