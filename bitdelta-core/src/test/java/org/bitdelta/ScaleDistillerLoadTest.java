package org.bitdelta;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bitdelta-core alone has no distiller: loading one says which dependency to add. */
class ScaleDistillerLoadTest {
    @Test
    void withoutAnImplementationTheErrorNamesTheDependency() {
        BitDeltaException error = assertThrows(BitDeltaException.class, ScaleDistiller::load);
        assertTrue(error.getMessage().contains("no ScaleDistiller implementation") && error.getMessage().contains("org.bitdelta:bitdelta-nd4j"),
                error.getMessage());
    }
}
