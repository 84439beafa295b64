package org.bitdelta;

import org.bitdelta.spi.TensorBackend;

import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * How {@link BitDelta#compress} works: which matrices get a 1-bit delta, per-matrix or per-row scales, progress,
 * and the backend it may compress on. Immutable; each setter returns a copy.
 */
public final class CompressOptions {
    /** q, k, v, o, gate, up and down projections of the decoder layers, as in the paper. */
    public static final List<String> DEFAULT_MATRIX_PATTERNS = List.of(
            ".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\\.weight");

    private final boolean perRowScales;
    private final List<Pattern> matrixPatterns;
    private final ProgressListener progress;
    private final TensorBackend backend;

    private CompressOptions(boolean perRowScales, List<Pattern> matrixPatterns, ProgressListener progress, TensorBackend backend) {
        this.perRowScales = perRowScales;
        this.matrixPatterns = matrixPatterns;
        this.progress = progress;
        this.backend = backend;
    }

    public static CompressOptions defaults() {
        return new CompressOptions(false, DEFAULT_MATRIX_PATTERNS.stream().map(Pattern::compile).toList(), ProgressListener.NONE, null);
    }

    /** One scale per output row instead of one per matrix. */
    public CompressOptions perRowScales(boolean enabled) {
        return new CompressOptions(enabled, matrixPatterns, progress, backend);
    }

    /** Full-match regular expressions on tensor names selecting the matrices to compress (2-D weights only). */
    public CompressOptions matrixPatterns(List<String> patterns) {
        if (patterns.isEmpty()) {
            throw new IllegalArgumentException("at least one matrix pattern is needed");
        }
        return new CompressOptions(perRowScales, patterns.stream().map(Pattern::compile).toList(), progress, backend);
    }

    public CompressOptions progress(ProgressListener listener) {
        return new CompressOptions(perRowScales, matrixPatterns, Objects.requireNonNull(listener), backend);
    }

    /**
     * The backend to compress on (the caller keeps owning it): the CUDA backend computes signs and scales on the
     * GPU, bit-identical to the CPU. Default (null): the default backend ({@code -Dbitdelta.backend}, else the best
     * available), opened for the call and closed after it.
     */
    public CompressOptions backend(TensorBackend backend) {
        return new CompressOptions(perRowScales, matrixPatterns, progress, backend);
    }

    /** The backend set with {@link #backend(TensorBackend)}, or null for the default one. */
    public TensorBackend backend() {
        return backend;
    }

    public boolean perRowScales() {
        return perRowScales;
    }

    public List<String> matrixPatterns() {
        return matrixPatterns.stream().map(Pattern::pattern).toList();
    }

    public ProgressListener progress() {
        return progress;
    }

    /** Whether the tensor named {@code name} gets a 1-bit delta. */
    public boolean selects(String name) {
        return matrixPatterns.stream().anyMatch(pattern -> pattern.matcher(name).matches());
    }
}
