package org.bitdelta.langchain4j;

import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.ModelNotFoundException;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.output.FinishReason;
import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** LangChain4j's chat model interfaces over the engine, on the bundled stories260K family. */
class BitDeltaChatModelTest {
    static final String PROMPT = "Once upon a time";
    static Engine engine;
    static List<DeltaModel> deltas = new ArrayList<>();

    @BeforeAll
    static void open() {
        Path base = TestData.bundledModel("stories260K");
        engine = Engine.open(base, EngineOptions.defaults().backend("cpu"));
        for (String tenant : List.of("alice", "shakespeare")) {
            DeltaModel delta = BitDelta.compress(base, TestData.bundledModel("stories260K-ft-" + tenant));
            deltas.add(delta);
            engine.addTenant(tenant, delta);
        }
    }

    @AfterAll
    static void close() {
        engine.close();
        deltas.forEach(DeltaModel::close);
    }

    static CompletionResult inProcess(String tenant, int maxTokens) {
        return engine.submit(Request.chat(tenant, List.of(ChatMessage.user(PROMPT))).temperature(0).maxTokens(maxTokens)).result();
    }

    @Test
    void theModelNamePicksTheFineTuneAndTheAnswerIsTheEngines() {
        ChatModel model = BitDeltaChatModel.builder(engine).modelName("alice").temperature(0.0).maxOutputTokens(40).build();
        ChatResponse alice = model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).build());
        CompletionResult expected = inProcess("alice", 40);
        assertEquals(expected.text(), alice.aiMessage().text());
        assertEquals("alice", alice.modelName());
        assertEquals(expected.usage().promptTokens(), alice.tokenUsage().inputTokenCount());
        assertEquals(expected.usage().completionTokens(), alice.tokenUsage().outputTokenCount());
        assertEquals(expected.finishReason() == org.bitdelta.serving.FinishReason.LENGTH ? FinishReason.LENGTH : FinishReason.STOP,
                alice.finishReason());

        // The same application switches fine-tunes by name alone: no other model is loaded.
        ChatResponse shakespeare = model.chat(ChatRequest.builder().modelName("shakespeare").messages(UserMessage.from(PROMPT)).build());
        assertEquals(inProcess("shakespeare", 40).text(), shakespeare.aiMessage().text());
        ChatResponse base = model.chat(ChatRequest.builder().modelName("stories260K").messages(UserMessage.from(PROMPT)).build());
        assertEquals(inProcess("base", 40).text(), base.aiMessage().text());
        assertNotEquals(alice.aiMessage().text(), shakespeare.aiMessage().text());
        assertNotEquals(base.aiMessage().text(), alice.aiMessage().text());
    }

    @Test
    void theBuildersSettingsBecomeTheDefaultParameters() {
        BitDeltaChatModel.Builder builder = BitDeltaChatModel.builder(engine);
        ChatRequestParameters unset = builder.build().defaultRequestParameters();
        assertEquals(Engine.BASE, unset.modelName());
        assertEquals(List.of(), unset.stopSequences());
        assertNull(unset.temperature());
        assertNull(unset.maxOutputTokens());

        List<String> stops = new ArrayList<>(List.of("The end"));
        ChatRequestParameters set = builder.modelName("alice").temperature(0.5).topP(0.9).topK(3).maxOutputTokens(7)
                .stopSequences(stops).build().defaultRequestParameters();
        stops.clear();
        builder.temperature(1.0);
        // Copied when given and when built: neither the caller's list nor the builder's later settings reach a built model.
        assertEquals(List.of("alice", 0.5, 0.9, 3, 7, List.of("The end")), List.of(set.modelName(), set.temperature(), set.topP(),
                set.topK(), set.maxOutputTokens(), set.stopSequences()));
        assertThrows(NullPointerException.class, () -> builder.modelName(null));
    }

    @Test
    void parametersMapToTheEngine() {
        ChatModel model = BitDeltaChatModel.builder(engine).modelName("alice").temperature(0.0).build();
        ChatResponse five = model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).maxOutputTokens(5).build());
        assertEquals(FinishReason.LENGTH, five.finishReason());
        assertEquals(5, five.tokenUsage().outputTokenCount());

        String full = inProcess("alice", 40).text();
        String stop = full.substring(full.length() / 2, full.length() / 2 + 3);
        ChatResponse stopped = model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).maxOutputTokens(40).stopSequences(List.of(stop)).build());
        assertEquals(FinishReason.STOP, stopped.finishReason());
        assertEquals(full.substring(0, full.indexOf(stop)), stopped.aiMessage().text());

        // Sampling parameters reach the engine: top_k 1 is greedy whatever the temperature.
        ChatResponse topK = model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).maxOutputTokens(40).temperature(1.5).topK(1)
                .build());
        assertEquals(full, topK.aiMessage().text());
        var invalid = assertThrows(dev.langchain4j.exception.InvalidRequestException.class,
                () -> model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).temperature(3.0).build()));
        assertTrue(invalid.getMessage().contains("temperature"), invalid.getMessage());
        assertThrows(dev.langchain4j.exception.InvalidRequestException.class,
                () -> model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).topP(0.0).build()));
    }

    @Test
    void whatTheEngineCannotDoIsRefused() {
        ChatModel model = BitDeltaChatModel.builder(engine).modelName("alice").build();
        var missing = assertThrows(ModelNotFoundException.class,
                () -> model.chat(ChatRequest.builder().modelName("bob").messages(UserMessage.from(PROMPT)).build()));
        assertTrue(missing.getMessage().contains("bob"), missing.getMessage());
        assertThrows(UnsupportedFeatureException.class, () -> model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT))
                .toolSpecifications(ToolSpecification.builder().name("weather").build()).build()));
        assertThrows(UnsupportedFeatureException.class,
                () -> model.chat(ChatRequest.builder().messages(UserMessage.from(PROMPT)).presencePenalty(0.5).build()));
    }

    @Test
    void streamingGivesTheSameTextTokenByToken() throws Exception {
        StreamingChatModel model = BitDeltaStreamingChatModel.builder(engine).modelName("shakespeare").temperature(0.0).maxOutputTokens(40)
                .build();
        List<String> partials = new ArrayList<>();
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        model.chat(PROMPT, new StreamingChatResponseHandler() {
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
        ChatResponse response = done.get(60, TimeUnit.SECONDS);
        CompletionResult expected = inProcess("shakespeare", 40);
        assertEquals(expected.text(), response.aiMessage().text());
        assertEquals(expected.text(), String.join("", partials));
        assertTrue(partials.size() > 5, "streamed in pieces: " + partials);
        assertEquals(expected.usage().completionTokens(), response.tokenUsage().outputTokenCount());
    }

    @Test
    void streamingReportsErrorsAndCanBeCancelled() throws Exception {
        StreamingChatModel model = BitDeltaStreamingChatModel.builder(engine).modelName("nobody").build();
        CompletableFuture<Throwable> error = new CompletableFuture<>();
        model.chat(PROMPT, new StreamingChatResponseHandler() {
            @Override
            public void onCompleteResponse(ChatResponse completeResponse) {
                error.completeExceptionally(new AssertionError("completed for an unknown model"));
            }

            @Override
            public void onError(Throwable throwable) {
                error.complete(throwable);
            }
        });
        assertTrue(error.get(30, TimeUnit.SECONDS) instanceof ModelNotFoundException);

        long cancelledBefore = engine.stats().requestsFinished().get(org.bitdelta.serving.FinishReason.CANCELLED);
        StreamingChatModel alice = BitDeltaStreamingChatModel.builder(engine).modelName("alice").temperature(0.0).maxOutputTokens(400).build();
        List<String> partials = new ArrayList<>();
        CompletableFuture<Void> cancelled = new CompletableFuture<>();
        alice.chat(PROMPT, new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(PartialResponse partialResponse, PartialResponseContext context) {
                partials.add(partialResponse.text());
                if (partials.size() == 3) {
                    context.streamingHandle().cancel();
                    cancelled.complete(null);
                }
            }

            @Override
            public void onCompleteResponse(ChatResponse completeResponse) {
                cancelled.completeExceptionally(new AssertionError("completed after cancel: " + completeResponse));
            }

            @Override
            public void onError(Throwable throwable) {
                cancelled.completeExceptionally(throwable);
            }
        });
        cancelled.get(30, TimeUnit.SECONDS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (engine.stats().requestsFinished().get(org.bitdelta.serving.FinishReason.CANCELLED) == cancelledBefore && System.nanoTime() < deadline) {
            TimeUnit.MILLISECONDS.sleep(5);
        }
        assertEquals(cancelledBefore + 1, engine.stats().requestsFinished().get(org.bitdelta.serving.FinishReason.CANCELLED));
        assertEquals(3, partials.size(), "nothing more after cancel: " + partials);
    }
}
