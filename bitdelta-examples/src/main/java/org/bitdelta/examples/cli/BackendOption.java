package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;
import picocli.CommandLine.Option;

/** {@code --backend NAME}, shared by the commands that compute: which tensor backend they run on. */
final class BackendOption {
    @Option(names = "--backend", paramLabel = "NAME",
            description = "the backend to run on: cpu, cuda or cpu-scalar (default: the best available)")
    String name;

    /** Opens the named backend, or the default one without --backend; the caller closes it. */
    TensorBackend open() {
        if (name == null) {
            return TensorBackends.createDefault();
        }
        if (name.isBlank()) {
            throw new BitDeltaException("--backend needs a name: cpu, cuda or cpu-scalar");
        }
        try {
            return TensorBackends.create(name);
        } catch (BitDeltaException e) {
            throw new BitDeltaException("--backend " + name + ": " + e.getMessage(), e);
        }
    }
}
