package org.bitdelta.examples.cli;

import org.bitdelta.inference.DecoderModel;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineStats;
import org.bitdelta.spi.MemoryUse;

import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/** {@code --verbose}: what the backend's device holds for a model, by purpose, in human-readable units. */
final class MemoryReport {
    private MemoryReport() {
    }

    static void print(PrintWriter out, DecoderModel model, String backendName) {
        print(out, model.memory(), model.tenantDeviceBytes(), backendName);
    }

    /** The same for a serving engine. */
    static void print(PrintWriter out, EngineStats stats, String backendName) {
        Map<String, Long> tenantBytes = new LinkedHashMap<>();
        for (EngineStats.TenantStats tenant : stats.tenants()) {
            if (!tenant.name().equals(Engine.BASE)) {
                tenantBytes.put(tenant.name(), tenant.deviceBytes());
            }
        }
        print(out, stats.memory(), tenantBytes, backendName);
    }

    private static void print(PrintWriter out, MemoryUse memory, Map<String, Long> tenantDeviceBytes, String backendName) {
        out.printf(Locale.ROOT, "memory on the %s backend:%n", backendName);
        line(out, "base", Sizes.bytes(memory.baseBytes()));
        for (Map.Entry<String, Long> tenant : tenantDeviceBytes.entrySet()) {
            long bytes = tenant.getValue();
            line(out, "tenant " + tenant.getKey(), bytes == 0 ? "0 B (not resident)" : Sizes.bytes(bytes));
        }
        line(out, "KV cache", Sizes.bytes(memory.kvCacheBytes()));
        line(out, "workspace", Sizes.bytes(memory.workspaceBytes()));
        line(out, "total", Sizes.bytes(memory.total()));
        line(out, "device total", memory.deviceTotal() < 0 ? "not reported by the backend" : Sizes.bytes(memory.deviceTotal()));
        line(out, "device free", memory.deviceFree() < 0 ? "not reported by the backend" : Sizes.bytes(memory.deviceFree()));
    }

    private static void line(PrintWriter out, String what, String amount) {
        out.printf(Locale.ROOT, "  %-24s %s%n", what, amount);
    }
}
