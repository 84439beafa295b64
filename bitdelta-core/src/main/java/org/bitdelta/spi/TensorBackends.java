package org.bitdelta.spi;

import org.bitdelta.BitDeltaException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;
import java.util.stream.Collectors;

/**
 * Chooses a {@link TensorBackend}: the one named by {@code -Dbitdelta.backend=NAME} (an unknown or unavailable
 * name fails at once), else the available provider of highest priority. The choice is logged once.
 */
public final class TensorBackends {
    public static final String PROPERTY = "bitdelta.backend";
    private static final Logger LOG = LoggerFactory.getLogger(TensorBackends.class);
    private static volatile String loggedChoice;

    private TensorBackends() {
    }

    /** All providers on the class path or module path, cheap to list. */
    public static List<TensorBackendProvider> providers() {
        List<TensorBackendProvider> providers = new ArrayList<>();
        ServiceLoader.load(TensorBackendProvider.class, TensorBackends.class.getClassLoader()).forEach(providers::add);
        providers.sort(Comparator.comparingInt(TensorBackendProvider::priority).reversed());
        return providers;
    }

    /** The backend chosen by {@code -Dbitdelta.backend}, or the best available one. */
    public static TensorBackend createDefault() {
        String name = System.getProperty(PROPERTY);
        try {
            return create(name);
        } catch (BitDeltaException e) {
            if (name == null || name.isBlank()) {
                throw e;
            }
            // Say where the name came from: the caller passed none.
            throw new BitDeltaException("-D" + PROPERTY + "=" + name + ": " + e.getMessage(), e);
        }
    }

    /**
     * The backend named {@code name} (null or blank: the best available). A named backend that is unknown,
     * unavailable or fails to start is an error; without a name, a provider that reports itself available but
     * fails to start (a driver without a usable device, say) is passed over for the next one, with one log line.
     */
    public static TensorBackend create(String name) {
        List<TensorBackendProvider> providers = providers();
        String known = providers.stream().map(TensorBackendProvider::name).collect(Collectors.joining(", "));
        if (name != null && !name.isBlank()) {
            TensorBackendProvider chosen = providers.stream().filter(provider -> provider.name().equals(name.trim())).findFirst()
                    .orElseThrow(() -> new BitDeltaException("unknown backend '" + name + "'; known: " + known));
            if (!chosen.isAvailable()) {
                throw new BitDeltaException("backend '" + name + "' is not available here: " + chosen.unavailableReason());
            }
            TensorBackend backend = chosen.create();
            logChoice(chosen.name() + " (chosen by name)");
            return backend;
        }
        List<String> passedOver = new ArrayList<>();
        for (TensorBackendProvider provider : providers) {
            if (!provider.isAvailable()) {
                if (provider.priority() > 100) {
                    passedOver.add(provider.name() + ": " + provider.unavailableReason());
                }
                continue;
            }
            TensorBackend backend;
            try {
                backend = provider.create();
            } catch (RuntimeException | LinkageError e) {
                passedOver.add(provider.name() + ": failed to start: " + e.getMessage());
                continue;
            }
            logChoice(provider.name() + " (highest priority available" + (passedOver.isEmpty() ? "" : "; passed over " + passedOver) + ")");
            return backend;
        }
        throw new BitDeltaException("no tensor backend is available; providers found: " + known
                + (passedOver.isEmpty() ? "" : "; " + passedOver));
    }

    private static void logChoice(String choice) {
        if (!choice.equals(loggedChoice)) {
            loggedChoice = choice;
            LOG.info("bitdelta backend: {}", choice);
        }
    }
}
