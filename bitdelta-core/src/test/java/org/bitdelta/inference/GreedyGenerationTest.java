package org.bitdelta.inference;

import com.google.gson.JsonArray;
import com.google.gson.JsonParser;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;

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
        try (DecoderModel model = DecoderModel.load(TestData.bundledModel("stories260K"))) {
            int[] prompt = {expected[0]};
            Generator.Result result = new Generator(model).generate(
                    List.of(Generator.Request.greedy(DecoderModel.BASE, prompt, expected.length - 1))).getFirst();
            int[] all = new int[1 + result.tokens().length];
            all[0] = prompt[0];
            System.arraycopy(result.tokens(), 0, all, 1, result.tokens().length);
            assertArrayEquals(expected, all, "greedy ids: " + Arrays.toString(all));
            assertEquals(Generator.FinishReason.LENGTH, result.finishReason());
            System.out.println("stories260K greedy: " + model.tokenizer().decode(all));
        }
    }
}
