package org.bitdelta.inference;

import com.google.gson.JsonArray;
import com.google.gson.JsonParser;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.Request;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

class GreedyGenerationTest {

    @Test
    void stories260KFromBosReproducesKarpathysSample() throws IOException {
        JsonArray expectedJson = JsonParser.parseString(Files.readString(TestData.bundled("reference.json")))
                .getAsJsonObject().getAsJsonArray("stories260K_greedy_ids");
        int[] expected = new int[expectedJson.size()];
        for (int i = 0; i < expected.length; i++) {
            expected[i] = expectedJson.get(i).getAsInt();
        }
        try (Engine engine = Engine.open(TestData.bundledModel("stories260K"))) {
            int[] prompt = {expected[0]};
            CompletionResult result = engine.submit(Request.tokens(Engine.BASE, prompt).maxTokens(expected.length - 1)).result();
            int[] all = new int[1 + result.tokens().length];
            all[0] = prompt[0];
            System.arraycopy(result.tokens(), 0, all, 1, result.tokens().length);
            assertArrayEquals(expected, all, "greedy ids: " + Arrays.toString(all));
            assertEquals(FinishReason.LENGTH, result.finishReason());
            System.out.println("stories260K greedy: " + result.text());
        }
    }
}
