package org.bitdelta.examples.cli;

import org.bitdelta.ProgressListener;

import java.io.PrintWriter;
import java.util.Locale;

/** A one-line progress bar on standard error, redrawn at most ten times a second; plain lines when not a terminal. */
final class ProgressBar implements ProgressListener {
    private static final int WIDTH = 30;
    private final PrintWriter err;
    private final boolean terminal;
    private final long startNanos = System.nanoTime();
    private long lastDrawNanos;
    private int lastPercentPrinted = -1;

    ProgressBar(PrintWriter err) {
        this.err = err;
        this.terminal = System.console() != null;
    }

    @Override
    public synchronized void onProgress(String stage, long done, long total) {
        long now = System.nanoTime();
        boolean finished = done >= total;
        int percent = total == 0 ? 100 : (int) (100 * done / total);
        if (terminal) {
            if (!finished && now - lastDrawNanos < 100_000_000L) {
                return;
            }
            lastDrawNanos = now;
            int filled = total == 0 ? WIDTH : (int) (WIDTH * done / total);
            double seconds = (now - startNanos) / 1e9;
            err.printf(Locale.ROOT, "\r%-9s [%s%s] %3d%% %6.1f s", stage, "#".repeat(filled), " ".repeat(WIDTH - filled), percent, seconds);
            if (finished) {
                err.println();
            }
            err.flush();
        } else if (percent / 25 != lastPercentPrinted / 25 || (finished && lastPercentPrinted != 100)) {
            lastPercentPrinted = percent;
            err.printf(Locale.ROOT, "%s: %d%%%n", stage, percent);
            err.flush();
        }
    }
}
