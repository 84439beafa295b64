package org.bitdelta.compress;

import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.ScaleDistiller;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** DeltaModel's typed accessors read back what compression and distillation record. */
class DeltaModelMetadataTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static final Path TUNED = TestData.bundledModel("stories260K-ft-alice");

    @Test
    void aCompressedDeltaNamesItsOrigin() throws IOException {
        try (DeltaModel delta = BitDelta.compress(BASE, TUNED, CompressOptions.defaults().perRowScales(true))) {
            assertEquals(1, delta.formatVersion());
            assertEquals(BitDelta.version(), delta.libraryVersion().orElseThrow());
            assertEquals("stories260K-ft-alice", delta.finetunedName().orElseThrow());
            assertEquals(Files.size(TUNED.resolve("model.safetensors")), delta.finetunedWeightBytes().orElseThrow());
            assertEquals("per_row", delta.scaleGranularity());
            assertTrue(delta.distillation().isEmpty(), "a fresh compression is not distilled");
        }
    }

    @Test
    void aDistillationRecordIsReadBackTyped() {
        String record = """
                {"steps":200,"batch":4,"seq":128,"lr":1.0E-4,"weight_decay":0.01,"betas":"0.9,0.999","seed":7,
                 "loss_first":0.25,"loss_last":0.125,"backend":"nd4j CpuBackend"}""";
        try (DeltaModel delta = BitDelta.compress(BASE, TUNED);
             DeltaModel distilled = delta.withScales(Map.of(), Map.of(ScaleDistiller.METADATA_KEY, record))) {
            assertEquals(new DeltaModel.Distillation(200, 4, 128, 1e-4, 0.01, 7, 0.25, 0.125), distilled.distillation().orElseThrow());
        }
    }

    @Test
    void aMalformedDistillationRecordIsAClearError() {
        try (DeltaModel delta = BitDelta.compress(BASE, TUNED);
             DeltaModel distilled = delta.withScales(Map.of(), Map.of(ScaleDistiller.METADATA_KEY, "{\"steps\":3}"))) {
            BitDeltaException error = assertThrows(BitDeltaException.class, distilled::distillation);
            assertTrue(error.getMessage().contains("metadata distilled is not a distillation record"), error.getMessage());
        }
    }
}
