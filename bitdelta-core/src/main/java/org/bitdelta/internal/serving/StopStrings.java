package org.bitdelta.internal.serving;

import java.util.List;

/**
 * Finds stop strings in a completion's text as it grows, across piece boundaries: text that could be the start of
 * a stop string is held back until the next text shows whether it is; a stop string that appears is cut off with
 * everything after it, and never released.
 */
final class StopStrings {
    private final List<String> stops;
    private final StringBuilder pending = new StringBuilder();
    private String matched;

    StopStrings(List<String> stops) {
        this.stops = List.copyOf(stops);
    }

    /** Adds text; returns what can be released now. After a match nothing more is released: see {@link #matched()}. */
    String add(String text) {
        if (matched != null) {
            return "";
        }
        pending.append(text);
        if (stops.isEmpty()) {
            return release(pending.length());
        }
        int first = -1;
        String firstStop = null;
        for (String stop : stops) {
            int at = pending.indexOf(stop);
            if (at >= 0 && (first < 0 || at < first)) {
                first = at;
                firstStop = stop;
            }
        }
        if (first >= 0) {
            matched = firstStop;
            String released = pending.substring(0, first);
            pending.setLength(0);
            return released;
        }
        return release(pending.length() - heldBack());
    }

    /** Everything held back, for the end of a completion that no stop string ended. */
    String flush() {
        return matched != null ? "" : release(pending.length());
    }

    /** The stop string that appeared, or null. */
    String matched() {
        return matched;
    }

    /** Length of the longest end of the pending text that is the start of a stop string. */
    private int heldBack() {
        int longest = 0;
        for (String stop : stops) {
            for (int length = Math.min(stop.length() - 1, pending.length()); length > longest; length--) {
                if (endsWith(stop, length)) {
                    longest = length;
                    break;
                }
            }
        }
        return longest;
    }

    /** Whether the pending text ends with the first {@code length} characters of {@code stop}. */
    private boolean endsWith(String stop, int length) {
        int start = pending.length() - length;
        for (int i = 0; i < length; i++) {
            if (pending.charAt(start + i) != stop.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    private String release(int length) {
        String released = pending.substring(0, length);
        pending.delete(0, length);
        return released;
    }
}
