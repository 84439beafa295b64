package org.bitdelta.spi;

import org.bitdelta.BitDeltaException;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;
import java.util.logging.Logger;
import java.util.stream.Collectors;

/**
 * Chooses a {@link TensorBackend}: the one named by {@code -Dbitdelta.backend=NAME} (an unknown or unavailable
 * name fails at once), else the available provider of highest priority. The choice is logged once.
 */
public final class TensorBackends {
    public static final String PROPERTY = "bitdelta.backend";
    private static final Logger LOG = Logger.getLogger(TensorBackends.class.getName());
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
        return create(System.getProperty(PROPERTY));
    }

    /** The backend named {@code name} (null or blank: the best available). */
    public static TensorBackend create(String name) {
        List<TensorBackendProvider> providers = providers();
        String known = providers.stream().map(TensorBackendProvider::name).collect(Collectors.joining(", "));
        TensorBackendProvider chosen;
        if (name != null && !name.isBlank()) {
            chosen = providers.stream().filter(provider -> provider.name().equals(name.trim())).findFirst()
                    .orElseThrow(() -> new BitDeltaException("unknown backend '" + name + "' (-D" + PROPERTY + "); known: " + known));
            if (!chosen.isAvailable()) {
                throw new BitDeltaException("backend '" + name + "' is not available here: " + chosen.unavailableReason());
            }
        } else {
            chosen = providers.stream().filter(TensorBackendProvider::isAvailable).findFirst()
                    .orElseThrow(() -> new BitDeltaException("no tensor backend is available; providers found: " + known));
        }
        if (!chosen.name().equals(loggedChoice)) {
            loggedChoice = chosen.name();
            LOG.info("bitdelta backend: " + chosen.name() + (name == null || name.isBlank() ? " (highest priority available)" : " (chosen by name)"));
        }
        return chosen.create();
    }
}
