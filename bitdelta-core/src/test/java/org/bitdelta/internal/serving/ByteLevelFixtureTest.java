package org.bitdelta.internal.serving;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.inference.Tokenizer;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The llama-bf16 fixture (a byte-level BPE tokenizer trained by Hugging Face tokenizers, ChatML special tokens, a chat
 * template in tokenizer_config.json) against what transformers made of it
 * (golden/tokenizer-llama-bf16.json): token ids and decoded text of samples with spaces, tabs, newlines, accents,
 * CJK and emoji (multi-byte characters split over several byte-level tokens), and the rendered chat prompt and its ids.
 */
class ByteLevelFixtureTest {
    private static final Path MODEL = TestData.bundledModel("llama-bf16");

    private static JsonObject golden() throws IOException {
        return JsonParser.parseString(Files.readString(TestData.bundled("golden/tokenizer-llama-bf16.json"))).getAsJsonObject();
    }

    private static int[] ids(JsonArray array) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = array.get(i).getAsInt();
        }
        return ids;
    }

    @Test
    void tokenizationAndDecodingMatchTransformers() throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(MODEL)) {
            for (JsonElement element : golden().getAsJsonArray("samples")) {
                JsonObject sample = element.getAsJsonObject();
                String text = sample.get("text").getAsString();
                int[] expected = ids(sample.getAsJsonArray("ids"));
                assertArrayEquals(expected, tokenizer.encode(text), "ids of " + text);
                assertEquals(sample.get("decoded").getAsString(), tokenizer.decode(expected), "decoded " + text);
            }
        }
    }

    @Test
    void incrementalDetokenizationOfMultiByteCharactersEqualsTheWholeText() throws IOException {
        // Streamed one token at a time, the pieces add up to the decoded text: no character is cut or duplicated.
        try (Tokenizer tokenizer = Tokenizer.load(MODEL)) {
            for (JsonElement element : golden().getAsJsonArray("samples")) {
                JsonObject sample = element.getAsJsonObject();
                int[] ids = ids(sample.getAsJsonArray("ids"));
                Detokenizer detokenizer = new Detokenizer(tokenizer, new int[]{ids.length > 0 ? ids[0] : 0});
                StringBuilder streamed = new StringBuilder();
                for (int i = 1; i < ids.length; i++) {
                    streamed.append(detokenizer.add(ids[i]));
                }
                streamed.append(detokenizer.flush());
                String expected = tokenizer.decode(java.util.Arrays.copyOfRange(ids, 1, ids.length));
                assertEquals(expected, streamed.toString(), "streamed text of " + sample.get("text").getAsString());
            }
        }
    }

    @Test
    void theChatTemplateRendersAsTransformersDoes() throws IOException {
        JsonObject chat = golden().getAsJsonObject("chat");
        List<ChatMessage> messages = new ArrayList<>();
        for (JsonElement element : chat.getAsJsonArray("messages")) {
            JsonObject message = element.getAsJsonObject();
            messages.add(new ChatMessage(message.get("role").getAsString(), message.get("content").getAsString()));
        }
        ChatTemplate template = ChatTemplate.load(MODEL, null);
        assertEquals(chat.get("rendered").getAsString(), template.render(messages, true).text());
        assertEquals(chat.get("rendered_without_generation_prompt").getAsString(), template.render(messages, false).text());

        // Through the engine: the prompt it runs is transformers' apply_chat_template(..., tokenize=True).
        try (Engine engine = Engine.open(MODEL, EngineOptions.defaults())) {
            CompletionResult result = engine.submit(Request.chat(Engine.BASE, messages).maxTokens(1)).result();
            assertEquals(ids(chat.getAsJsonArray("ids")).length, result.usage().promptTokens());
        }
        // The ids themselves, from the engine's own request preparation.
        try (Tokenizer tokenizer = Tokenizer.load(MODEL); Decoder decoder = Decoder.load(MODEL, new VectorCpuBackend(), true)) {
            InputProcessor inputs = new InputProcessor(decoder, tokenizer, template, null, new int[0], MODEL.toString());
            assertArrayEquals(ids(chat.getAsJsonArray("ids")), inputs.prepare(Request.chat(Engine.BASE, messages)).prompt());
        }
    }
}
