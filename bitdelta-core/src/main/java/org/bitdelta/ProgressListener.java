package org.bitdelta;

/** Receives progress of long work (compression, merge, distillation); called from worker threads. */
@FunctionalInterface
public interface ProgressListener {
    ProgressListener NONE = (stage, done, total) -> {
    };

    /**
     * @param stage what is being done ("compress", "merge", ...)
     * @param done  units done so far (bytes, steps, ...)
     * @param total units in all
     */
    void onProgress(String stage, long done, long total);
}
