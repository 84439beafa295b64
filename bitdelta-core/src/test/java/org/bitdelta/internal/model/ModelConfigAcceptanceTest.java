package org.bitdelta.internal.model;

import com.google.gson.JsonParser;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The transformers 5 config of the data folder's tinyllama base, which {@link ModelConfigTest} carries a copy of. */
class ModelConfigAcceptanceTest {

    @Test
    void readsTheTinyllamaConfigAndTheDefaultSuiteCarriesItVerbatim() throws IOException {
        Path folder = TestData.acceptance("models/tinyllama-shakespeare-base");
        ModelConfig transformers5 = ModelConfig.read(folder);
        assertEquals(10000.0, transformers5.ropeTheta(), "rope_parameters.rope_theta");
        assertEquals(JsonParser.parseString(Files.readString(folder.resolve("config.json"))), JsonParser.parseString(ModelConfigTest.TRANSFORMERS5_CONFIG),
                "ModelConfigTest.TRANSFORMERS5_CONFIG is a copy of " + folder.resolve("config.json"));
    }
}
