package org.bitdelta.internal.serving;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/** {@link StopStrings}: a stop string split over pieces is found, never released, and text that might start one waits. */
class StopStringsTest {

    private static List<String> feed(StopStrings stops, String... pieces) {
        List<String> released = new ArrayList<>();
        for (String piece : pieces) {
            released.add(stops.add(piece));
        }
        return released;
    }

    @Test
    void aStopStringSplitOverPiecesIsFoundAndCutWithWhatFollows() {
        StopStrings stops = new StopStrings(List.of("END"));
        assertEquals(List.of("Hello ", "", ""), feed(stops, "Hello E", "N", "D and more"));
        assertEquals("END", stops.matched());
        assertEquals("", stops.add("later"), "nothing after a match");
        assertEquals("", stops.flush());
    }

    @Test
    void heldBackTextIsReleasedWhenItTurnsOutNotToBeAStop() {
        StopStrings stops = new StopStrings(List.of("\n\n"));
        assertEquals(List.of("one", "\ntwo"), feed(stops, "one\n", "two"));
        assertNull(stops.matched());
    }

    @Test
    void aFalseStartThenTheRealStop() {
        StopStrings stops = new StopStrings(List.of("abc"));
        assertEquals(List.of("x", "ab"), feed(stops, "xab", "abc"));
        assertEquals("abc", stops.matched());
    }

    @Test
    void theEarliestOfSeveralStopStringsWins() {
        StopStrings stops = new StopStrings(List.of("world", "lo w"));
        assertEquals(List.of("hel"), feed(stops, "hello world"));
        assertEquals("lo w", stops.matched());
    }

    @Test
    void flushReleasesWhatWasHeldBack() {
        StopStrings stops = new StopStrings(List.of("END"));
        assertEquals(List.of("the "), feed(stops, "the EN"));
        assertEquals("EN", stops.flush());
        assertNull(stops.matched());
    }

    @Test
    void withoutStopStringsEverythingIsReleasedAtOnce() {
        StopStrings stops = new StopStrings(List.of());
        assertEquals(List.of("a", "b\n"), feed(stops, "a", "b\n"));
    }
}
