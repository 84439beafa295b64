package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code bitdelta serve} as a user runs it: it prints the URL, answers there with the key it was given, and stops when interrupted. */
class ServeCliTest {
    @Test
    void servePrintsTheUrlAndServesTheBaseAndItsTenants() throws Exception {
        Path folder = Files.createTempDirectory("serve-cli-test-");
        try {
            Path delta = folder.resolve("alice.bitdelta");
            try (DeltaModel model = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-alice"))) {
                model.save(delta);
            }
            StringWriter out = new StringWriter();
            StringWriter err = new StringWriter();
            AtomicInteger code = new AtomicInteger(-1);
            Thread serving = Thread.ofPlatform().start(() -> code.set(Main.run(new String[]{"serve", "--base",
                    TestData.bundledModel("stories260K").toString(), "--delta", "alice=" + delta, "--port", "0", "--backend", "cpu",
                    "--api-key", "cli-key"}, new PrintWriter(out, true), new PrintWriter(err, true))));
            // The whole banner (its last line printed), not just the URL line: the lines after it are checked below.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!out.toString().contains("Serving until interrupted")) {
                assertTrue(serving.isAlive(), "serve ended: " + code.get() + "\n" + out + err);
                assertTrue(System.nanoTime() < deadline, "no banner printed within 60 s:\n" + out + err);
                TimeUnit.MILLISECONDS.sleep(20);
            }
            Matcher matcher = Pattern.compile("web page +(http://\\S+)").matcher(out.toString());
            assertTrue(matcher.find(), "no web page URL in:\n" + out);
            URI url = URI.create(matcher.group(1));
            String printed = out.toString();
            assertTrue(printed.contains("curl " + url + "v1/chat/completions"), printed);
            assertTrue(printed.contains("API key    required"), printed);
            try (HttpClient client = HttpClient.newHttpClient()) {
                HttpResponse<String> models = client.send(HttpRequest.newBuilder(url.resolve("/v1/models")).header("Authorization", "Bearer cli-key")
                        .build(), HttpResponse.BodyHandlers.ofString());
                assertEquals(200, models.statusCode(), models.body());
                for (String name : new String[]{"\"base\"", "\"stories260K\"", "\"alice\""}) {
                    assertTrue(models.body().contains(name), models.body());
                }
                HttpResponse<String> refused = client.send(HttpRequest.newBuilder(url.resolve("/v1/models")).build(), HttpResponse.BodyHandlers.ofString());
                assertEquals(401, refused.statusCode());
                HttpResponse<String> completion = client.send(HttpRequest.newBuilder(url.resolve("/v1/completions"))
                        .header("Authorization", "Bearer cli-key").header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"alice\", \"prompt\": \"Once upon a time\", \"max_tokens\": 8}"))
                        .build(), HttpResponse.BodyHandlers.ofString());
                assertEquals(200, completion.statusCode(), completion.body());
                assertTrue(completion.body().contains("\"text_completion\""), completion.body());
            }
            serving.interrupt();
            serving.join(TimeUnit.SECONDS.toMillis(30));
            assertFalse(serving.isAlive(), "serve did not stop when interrupted");
            assertEquals(0, code.get(), out + "\n" + err);
        } finally {
            AtomicFiles.deleteRecursively(folder);
        }
    }
}
