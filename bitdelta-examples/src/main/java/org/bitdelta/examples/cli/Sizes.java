package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

final class Sizes {
    private Sizes() {
    }

    static String bytes(long count) {
        if (count < 1024) {
            return count + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double value = count;
        int unit = -1;
        while (value >= 1024 && unit < units.length - 1) {
            value /= 1024;
            unit++;
        }
        return String.format(Locale.ROOT, "%.2f %s", value, units[unit]);
    }

    static long fileBytes(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new BitDeltaException(file + ": cannot stat: " + e, e);
        }
    }
}
