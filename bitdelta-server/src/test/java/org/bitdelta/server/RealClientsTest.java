package org.bitdelta.server;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.NotFoundException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.Request;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Clients nobody here wrote, pointed at the server: the official OpenAI Java SDK and LangChain4j's OpenAI module,
 * whole and streaming, get exactly the text the engine gives in-process (greedy).
 */
class RealClientsTest {
    static final String KEY = "sk-bitdelta-test";
    static final String PROMPT = "Once upon a time";
    static final int MAX_TOKENS = 32;
    static final List<String> MODELS = List.of("alice", "shakespeare", TestServer.BASE_ALIAS);
    static BitDeltaServer server;
    static OpenAIClient openAi;
    static String baseUrl;

    @BeforeAll
    static void start() {
        server = TestServer.start(ServerOptions.defaults().apiKey(KEY));
        baseUrl = server.url().resolve("/v1").toString();
        openAi = OpenAIOkHttpClient.builder().baseUrl(baseUrl).apiKey(KEY).maxRetries(0).build();
    }

    @AfterAll
    static void stop() {
        openAi.close();
        server.close();
    }

    static CompletionResult chatInProcess(String model) {
        return TestServer.engine().submit(Request.chat(model, List.of(ChatMessage.user(PROMPT))).temperature(0).maxTokens(MAX_TOKENS)).result();
    }

    static CompletionResult textInProcess(String model) {
        return TestServer.engine().submit(Request.text(model, PROMPT).temperature(0).maxTokens(MAX_TOKENS)).result();
    }

    static String finish(CompletionResult result) {
        return result.finishReason().name().toLowerCase(java.util.Locale.ROOT);
    }

    @Test
    void openAiSdkChatCompletionsWholeAndStreamed() {
        List<String> answers = new ArrayList<>();
        for (String model : MODELS) {
            CompletionResult expected = chatInProcess(model);
            ChatCompletionCreateParams params = ChatCompletionCreateParams.builder().model(model).addUserMessage(PROMPT).temperature(0)
                    .maxCompletionTokens(MAX_TOKENS).build();
            ChatCompletion whole = openAi.chat().completions().create(params);
            assertEquals(expected.text(), whole.choices().getFirst().message().content().orElseThrow(), model);
            assertEquals(finish(expected), whole.choices().getFirst().finishReason().asString(), model);
            assertEquals(expected.usage().completionTokens(), whole.usage().orElseThrow().completionTokens(), model);
            assertEquals(expected.usage().promptTokens(), whole.usage().orElseThrow().promptTokens(), model);
            assertEquals(model, whole.model());

            StringBuilder streamed = new StringBuilder();
            List<String> finishReasons = new ArrayList<>();
            List<Long> usage = new ArrayList<>();
            ChatCompletionCreateParams streamParams = params.toBuilder()
                    .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build();
            int chunks = 0;
            try (StreamResponse<ChatCompletionChunk> stream = openAi.chat().completions().createStreaming(streamParams)) {
                for (ChatCompletionChunk chunk : (Iterable<ChatCompletionChunk>) stream.stream()::iterator) {
                    chunks++;
                    chunk.choices().forEach(choice -> {
                        choice.delta().content().ifPresent(streamed::append);
                        choice.finishReason().ifPresent(reason -> finishReasons.add(reason.asString()));
                    });
                    chunk.usage().ifPresent(u -> usage.add(u.completionTokens()));
                }
            }
            assertEquals(expected.text(), streamed.toString(), model);
            assertEquals(List.of(finish(expected)), finishReasons, model);
            assertEquals(List.of((long) expected.usage().completionTokens()), usage, model);
            assertTrue(chunks > 5, model + ": streamed in " + chunks + " chunks");
            answers.add(whole.choices().getFirst().message().content().orElseThrow());
        }
        assertEquals(answers.size(), answers.stream().distinct().count(), "each model answers differently: " + answers);
    }

    @Test
    void openAiSdkCompletionsWholeAndStreamed() {
        for (String model : MODELS) {
            CompletionResult expected = textInProcess(model);
            CompletionCreateParams params = CompletionCreateParams.builder().model(model).prompt(PROMPT).temperature(0).maxTokens(MAX_TOKENS)
                    .build();
            Completion whole = openAi.completions().create(params);
            assertEquals(expected.text(), whole.choices().getFirst().text(), model);
            assertEquals(finish(expected), whole.choices().getFirst().finishReason().asString(), model);

            StringBuilder streamed = new StringBuilder();
            try (StreamResponse<Completion> stream = openAi.completions().createStreaming(params)) {
                stream.stream().forEach(chunk -> chunk.choices().forEach(choice -> streamed.append(choice.text())));
            }
            assertEquals(expected.text(), streamed.toString(), model);
        }
    }

    @Test
    void openAiSdkSeesErrorsAsItsOwnExceptions() {
        assertThrows(NotFoundException.class, () -> openAi.chat().completions().create(ChatCompletionCreateParams.builder().model("nobody")
                .addUserMessage(PROMPT).build()));
        OpenAIClient wrongKey = OpenAIOkHttpClient.builder().baseUrl(baseUrl).apiKey("wrong").maxRetries(0).build();
        try {
            assertThrows(UnauthorizedException.class, () -> wrongKey.models().list());
        } finally {
            wrongKey.close();
        }
        List<String> listed = openAi.models().list().data().stream().map(m -> m.id()).toList();
        assertTrue(listed.containsAll(List.of("base", TestServer.BASE_ALIAS, "alice", "shakespeare", "alice-rows")), listed.toString());
    }

    @Test
    void openAiSdkStreamFailsWhenItsTenantIsUnloaded() throws Exception {
        Engine engine = TestServer.engine();
        engine.addTenant("fleeting", TestServer.deltaFolder().resolve("alice.bitdelta"));
        ChatCompletionCreateParams params = ChatCompletionCreateParams.builder().model("fleeting").addUserMessage(PROMPT).temperature(0)
                .maxCompletionTokens(450).putAdditionalBodyProperty("ignore_eos", JsonValue.from(true)).build();
        StringBuilder received = new StringBuilder();
        RuntimeException failure;
        try (EngineGate gate = EngineGate.hold(engine)) { // the engine waits between steps while the test acts
            CompletableFuture<StreamResponse<ChatCompletionChunk>> opened = CompletableFuture.supplyAsync(
                    () -> openAi.chat().completions().createStreaming(params), command -> Thread.ofVirtual().start(command));
            gate.admit(1, 12); // admitted and about 11 of its 450 tokens generated
            try (StreamResponse<ChatCompletionChunk> stream = opened.get(30, TimeUnit.SECONDS)) {
                var chunks = stream.stream().iterator();
                for (int i = 0; i < 4; i++) {
                    chunks.next().choices().forEach(choice -> choice.delta().content().ifPresent(received::append));
                }
                engine.removeTenant("fleeting"); // while its request surely runs
                gate.close();
                failure = assertThrows(RuntimeException.class, () -> chunks.forEachRemaining(chunk -> { }));
            }
        }
        System.out.println("OpenAI SDK on an unloaded tenant's stream: " + failure);
        assertTrue(String.valueOf(failure.getMessage()).contains("fleeting"), String.valueOf(failure));
        assertFalse(received.isEmpty());
    }

    @Test
    void langChain4jOpenAiChatModelWholeAndStreamed() throws Exception {
        List<String> answers = new ArrayList<>();
        for (String model : MODELS) {
            CompletionResult expected = chatInProcess(model);
            OpenAiChatModel chatModel = OpenAiChatModel.builder().baseUrl(baseUrl).apiKey(KEY).modelName(model).temperature(0.0)
                    .maxTokens(MAX_TOKENS).maxRetries(0).build();
            ChatResponse whole = chatModel.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).build());
            assertEquals(expected.text(), whole.aiMessage().text(), model);
            assertEquals(expected.usage().completionTokens(), whole.tokenUsage().outputTokenCount(), model);
            assertEquals(expected.usage().promptTokens(), whole.tokenUsage().inputTokenCount(), model);

            OpenAiStreamingChatModel streamingModel = OpenAiStreamingChatModel.builder().baseUrl(baseUrl).apiKey(KEY).modelName(model)
                    .temperature(0.0).maxTokens(MAX_TOKENS).build();
            List<String> partials = new ArrayList<>();
            CompletableFuture<ChatResponse> done = new CompletableFuture<>();
            streamingModel.chat(PROMPT, new StreamingChatResponseHandler() {
                @Override
                public void onPartialResponse(String partialResponse) {
                    partials.add(partialResponse);
                }

                @Override
                public void onCompleteResponse(ChatResponse completeResponse) {
                    done.complete(completeResponse);
                }

                @Override
                public void onError(Throwable error) {
                    done.completeExceptionally(error);
                }
            });
            ChatResponse streamed = done.get(60, TimeUnit.SECONDS);
            assertEquals(expected.text(), streamed.aiMessage().text(), model);
            assertEquals(expected.text(), String.join("", partials), model);
            assertTrue(partials.size() > 5, model + ": streamed in pieces " + partials);
            assertEquals(whole.finishReason(), streamed.finishReason(), model);
            answers.add(whole.aiMessage().text());
        }
        assertNotEquals(answers.get(0), answers.get(1));
        assertNotEquals(answers.get(0), answers.get(2));
    }
}
