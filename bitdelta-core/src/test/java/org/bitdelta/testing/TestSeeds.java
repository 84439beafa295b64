package org.bitdelta.testing;

/** Seeds of randomized tests: {@code -Dbitdelta.test.seed=N} replays one; otherwise a fresh one, always printed. */
public final class TestSeeds {
    public static final String PROPERTY = "bitdelta.test.seed";

    private TestSeeds() {
    }

    public static long seed(String test) {
        String configured = System.getProperty(PROPERTY);
        long seed = configured != null && !configured.isBlank() ? Long.parseLong(configured.trim())
                : System.nanoTime() ^ (Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L);
        System.out.println(test + ": seed " + seed + " (replay with -D" + PROPERTY + "=" + seed + ")");
        return seed;
    }
}
