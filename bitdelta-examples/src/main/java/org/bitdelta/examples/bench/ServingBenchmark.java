package org.bitdelta.examples.bench;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.server.BitDeltaServer;
import org.bitdelta.server.ServerOptions;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The server under load on loopback: N concurrent streaming requests over four models (the base and three tenants
 * of the bundled stories260K family), each generating exactly M tokens (ignore_eos), against the same requests
 * submitted to the engine in-process at once, in the same run. Reports requests/s, time to first token and latency
 * (p50, p99), tokens/s and the process's CPU time per token for both, and what HTTP costs: 1 - (server tokens/s /
 * engine tokens/s), and the extra CPU per token (the HTTP client runs in this process too, so it counts). Runs alternate
 * (engine, server) R times after a warm-up of each, and every server answer is checked against the engine's.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *   -cp "bitdelta-examples/target/classes:bitdelta-examples/target/lib/*" org.bitdelta.examples.bench.ServingBenchmark \
 *   [MODELS_DIR=bitdelta-core/src/test/resources/models] [REQUESTS=64] [TOKENS=128] [ROUNDS=3]
 * </pre>
 */
public final class ServingBenchmark {
    private static final List<String> PROMPTS = List.of("Once upon a time", "The little dog", "Lily wanted to", "One day, a big",
            "Tom and Sue went", "The sun was", "She looked at the", "In the park there");
    private static final Pattern CONTENT = Pattern.compile("\"text\":\"((?:[^\"\\\\]|\\\\.)*)\"");

    private ServingBenchmark() {
    }

    record Job(String model, String prompt) {
    }

    /** One request's measurements: nanoseconds from its start to its first token and to its end, its tokens and text. */
    record Measured(long firstTokenNanos, long totalNanos, int tokens, String text) {
    }

    /** One round: its wall time, the CPU time the whole process spent in it (engine, server and client), its requests. */
    record Round(String what, double seconds, long cpuNanos, long systemNanos, List<Measured> requests) {
        int tokens() {
            return requests.stream().mapToInt(Measured::tokens).sum();
        }

        double tokensPerSecond() {
            return tokens() / seconds;
        }

        String row() {
            long[] firstToken = requests.stream().mapToLong(Measured::firstTokenNanos).sorted().toArray();
            long[] total = requests.stream().mapToLong(Measured::totalNanos).sorted().toArray();
            return String.format(Locale.ROOT, "| %s | %.1f | %.0f / %.0f | %.0f / %.0f | %.0f | %.0f (%.0f in the kernel) |", what,
                    requests.size() / seconds, percentile(firstToken, 50) / 1e6, percentile(firstToken, 99) / 1e6, percentile(total, 50) / 1e6,
                    percentile(total, 99) / 1e6, tokensPerSecond(), cpuMillisPerThousandTokens(), systemNanos / 1e6 / (tokens() / 1000.0));
        }

        double cpuMillisPerThousandTokens() {
            return cpuNanos / 1e6 / (tokens() / 1000.0);
        }
    }

    static long percentile(long[] sorted, int percent) {
        int index = (int) Math.ceil(percent / 100.0 * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, index))];
    }

    public static void main(String[] args) throws Exception {
        Path models = Path.of(args.length > 0 ? args[0] : "bitdelta-core/src/test/resources/models");
        int requests = args.length > 1 ? Integer.parseInt(args[1]) : 64;
        int tokens = args.length > 2 ? Integer.parseInt(args[2]) : 128;
        int rounds = args.length > 3 ? Integer.parseInt(args[3]) : 3;
        Path base = models.resolve("stories260K");
        Path folder = Files.createTempDirectory("bitdelta-serving-benchmark-");
        try {
            Path alice = folder.resolve("alice.bitdelta");
            Path shakespeare = folder.resolve("shakespeare.bitdelta");
            Path aliceRows = folder.resolve("alice-rows.bitdelta");
            save(BitDelta.compress(base, models.resolve("stories260K-ft-alice")), alice);
            save(BitDelta.compress(base, models.resolve("stories260K-ft-shakespeare")), shakespeare);
            save(BitDelta.compress(base, models.resolve("stories260K-ft-alice"), CompressOptions.defaults().perRowScales(true)), aliceRows);
            try (Engine engine = Engine.open(base, EngineOptions.defaults().maxRunning(Math.max(64, requests)))) {
                engine.addTenant("alice", alice);
                engine.addTenant("shakespeare", shakespeare);
                engine.addTenant("alice-rows", aliceRows);
                List<String> modelNames = List.of("stories260K", "alice", "shakespeare", "alice-rows");
                List<Job> jobs = new ArrayList<>();
                for (int i = 0; i < requests; i++) {
                    jobs.add(new Job(modelNames.get(i % modelNames.size()), PROMPTS.get(i / modelNames.size() % PROMPTS.size())));
                }
                run(engine, jobs, tokens, rounds);
            }
        } finally {
            try (Stream<Path> files = Files.walk(folder)) {
                for (Path file : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.delete(file);
                }
            }
        }
    }

    private static void save(DeltaModel delta, Path file) {
        try (delta) {
            delta.save(file);
        }
    }

    private static void run(Engine engine, List<Job> jobs, int tokens, int rounds) throws Exception {
        System.out.printf(Locale.ROOT, "%d concurrent requests over %s, %d tokens each (ignore_eos, greedy), after 2 warm-up rounds; %d cores, Java %s%n", jobs.size(),
                jobs.stream().map(Job::model).distinct().toList(), tokens, Runtime.getRuntime().availableProcessors(), Runtime.version());
        try (BitDeltaServer server = BitDeltaServer.start(engine, ServerOptions.defaults().port(0));
             HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build()) {
            URI completions = server.url().resolve("/v1/completions");
            for (int warmUp = 0; warmUp < 2; warmUp++) {
                inProcess(engine, jobs, tokens);
                overHttp(client, completions, jobs, tokens, true);
            }
            Round jdkClient = overHttp(client, completions, jobs, tokens, false);
            List<Round> engineRounds = new ArrayList<>();
            List<Round> serverRounds = new ArrayList<>();
            for (int round = 0; round < rounds; round++) {
                Round direct = inProcess(engine, jobs, tokens);
                Round http = overHttp(client, completions, jobs, tokens, true);
                for (int i = 0; i < jobs.size(); i++) {
                    if (!direct.requests().get(i).text().equals(http.requests().get(i).text())
                            || !direct.requests().get(i).text().equals(jdkClient.requests().get(i).text())) {
                        throw new AssertionError("request " + i + " " + jobs.get(i) + ": the server's text differs from the engine's:\n  "
                                + http.requests().get(i).text() + "\n  " + direct.requests().get(i).text());
                    }
                }
                engineRounds.add(direct);
                serverRounds.add(http);
            }
            System.out.println();
            System.out.println("| run | requests/s | time to first token p50 / p99 (ms) | latency p50 / p99 (ms) | tokens/s | CPU ms per 1000 tokens |");
            System.out.println("| --- | --- | --- | --- | --- | --- |");
            for (int round = 0; round < rounds; round++) {
                System.out.println(rename(engineRounds.get(round), "engine in-process, round " + (round + 1)).row());
                System.out.println(rename(serverRounds.get(round), "HTTP server (SSE, socket client), round " + (round + 1)).row());
            }
            double[] overhead = new double[rounds];
            for (int round = 0; round < rounds; round++) {
                overhead[round] = 1 - serverRounds.get(round).tokensPerSecond() / engineRounds.get(round).tokensPerSecond();
            }
            double[] cpuOverhead = new double[rounds];
            for (int round = 0; round < rounds; round++) {
                cpuOverhead[round] = serverRounds.get(round).cpuMillisPerThousandTokens() / engineRounds.get(round).cpuMillisPerThousandTokens() - 1;
            }
            System.out.println();
            System.out.printf(Locale.ROOT, "server cost in throughput (1 - server tokens/s / engine tokens/s), per round: %s; median %.1f%%%n",
                    percentages(overhead), 100 * median(overhead));
            System.out.printf(Locale.ROOT, "server cost in CPU (server CPU per token / engine CPU per token - 1; HTTP client included), per round: %s;"
                    + " median %.1f%%%n", percentages(cpuOverhead), 100 * median(cpuOverhead));
            System.out.println(rename(jdkClient, "for comparison: HTTP server through the JDK's HttpClient (one round)").row());
            System.out.println("every server answer (socket client and JDK client) equals the engine's in-process answer");
        }
    }

    private static Round rename(Round round, String what) {
        return new Round(what, round.seconds(), round.cpuNanos(), round.systemNanos(), round.requests());
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        return sorted[sorted.length / 2];
    }

    private static List<String> percentages(double[] values) {
        return Arrays.stream(values).mapToObj(value -> String.format(Locale.ROOT, "%.1f%%", 100 * value)).toList();
    }

    /** The process's CPU time in the kernel so far, from /proc/self/stat (0 where there is none). */
    private static long systemCpuNanos() {
        try {
            String stat = Files.readString(Path.of("/proc/self/stat"));
            String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return Long.parseLong(fields[12]) * 10_000_000L; // stime, field 15, in clock ticks of 10 ms (USER_HZ 100)
        } catch (IOException | RuntimeException e) {
            return 0;
        }
    }

    /** CPU time of the whole process so far (all threads, also those that ended). */
    private static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    private static Round inProcess(Engine engine, List<Job> jobs, int tokens) {
        long cpu = processCpuNanos();
        long system = systemCpuNanos();
        long start = System.nanoTime();
        List<Completion> completions = new ArrayList<>();
        for (Job job : jobs) {
            completions.add(engine.submit(Request.text(job.model(), job.prompt()).maxTokens(tokens).ignoreEos(true).temperature(0)));
        }
        List<Measured> measured = new ArrayList<>();
        for (Completion completion : completions) {
            CompletionResult result = completion.result();
            if (result.error() != null) {
                throw new IllegalStateException("request failed: " + result.error());
            }
            long[] tokenNanos = result.timings().tokenNanos();
            measured.add(new Measured(tokenNanos[0] - result.timings().submittedNanos(), result.timings().finishedNanos() - result.timings().submittedNanos(),
                    result.usage().completionTokens(), result.text()));
        }
        return new Round("engine", (System.nanoTime() - start) / 1e9, processCpuNanos() - cpu, systemCpuNanos() - system, measured);
    }

    private static Round overHttp(HttpClient client, URI completions, List<Job> jobs, int tokens) throws Exception {
        return overHttp(client, completions, jobs, tokens, false);
    }

    /** The jobs at once over HTTP, through the JDK client or ({@code sockets}) plain sockets. */
    private static Round overHttp(HttpClient client, URI completions, List<Job> jobs, int tokens, boolean sockets) throws Exception {
        long cpu = processCpuNanos();
        long system = systemCpuNanos();
        long start = System.nanoTime();
        List<Future<Measured>> futures = new ArrayList<>();
        try (ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor()) {
            for (Job job : jobs) {
                String body = String.format(Locale.ROOT, "{\"model\": \"%s\", \"prompt\": \"%s\", \"max_tokens\": %d, \"ignore_eos\": true, "
                        + "\"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}}", job.model(), job.prompt(), tokens);
                futures.add(threads.submit(() -> sockets ? streamOverSocket(completions, body) : stream(client, completions, body)));
            }
        }
        List<Measured> measured = new ArrayList<>();
        for (Future<Measured> future : futures) {
            measured.add(future.get());
        }
        return new Round("server", (System.nanoTime() - start) / 1e9, processCpuNanos() - cpu, systemCpuNanos() - system, measured);
    }

    /**
     * One streamed request over a plain socket: HTTP/1.1 written and its chunked body read by hand. Hand-written
     * because the JDK's HTTP client spends more CPU per streamed line than the server does per token, and in a
     * benchmark on the server's own cores that cost would be charged to the server; the JDK client still checks the
     * answers once ({@link #stream(HttpClient, URI, String)}).
     */
    private static Measured streamOverSocket(URI completions, String body) {
        long start = System.nanoTime();
        byte[] payload = body.getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket(completions.getHost(), completions.getPort())) {
            socket.setTcpNoDelay(true);
            OutputStream out = socket.getOutputStream();
            out.write(("POST " + completions.getPath() + " HTTP/1.1\r\nHost: " + completions.getHost() + "\r\nContent-Type: application/json\r\n"
                    + "Content-Length: " + payload.length + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(payload);
            out.flush();
            DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream(), 16384));
            String status = line(in);
            if (!status.startsWith("HTTP/1.1 200")) {
                throw new IllegalStateException(status);
            }
            while (!line(in).isEmpty()) {
                // headers: the body is chunked (the server streams)
            }
            EventTally tally = new EventTally(start);
            StringBuilder pending = new StringBuilder();
            for (int size = Integer.parseInt(line(in).trim(), 16); size > 0; size = Integer.parseInt(line(in).trim(), 16)) {
                byte[] chunk = new byte[size];
                in.readFully(chunk);
                line(in);
                pending.append(new String(chunk, StandardCharsets.UTF_8));
                int end;
                while ((end = pending.indexOf("\n")) >= 0) {
                    tally.accept(pending.substring(0, end));
                    pending.delete(0, end + 1);
                }
            }
            return tally.measured();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A CRLF-terminated line of the response head or of the chunk framing. */
    private static String line(DataInputStream in) throws IOException {
        StringBuilder line = new StringBuilder();
        for (int c = in.read(); c != '\n'; c = in.read()) {
            if (c < 0) {
                throw new IOException("the connection ended mid-line: " + line);
            }
            if (c != '\r') {
                line.append((char) c);
            }
        }
        return line.toString();
    }

    /** One streamed request through the JDK's HTTP client, timed from before it is sent; tokens from the usage chunk. */
    private static Measured stream(HttpClient client, URI completions, String body) {
        long start = System.nanoTime();
        HttpRequest request = HttpRequest.newBuilder(completions).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        try {
            HttpResponse<Stream<String>> response = client.send(request, HttpResponse.BodyHandlers.ofLines());
            if (response.statusCode() != 200) {
                throw new IllegalStateException("status " + response.statusCode());
            }
            EventTally tally = new EventTally(start);
            try (Stream<String> lines = response.body()) {
                lines.forEach(tally::accept);
            }
            return tally.measured();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    /** What the event stream of one request adds up to: its text, when its first token came, and its token count. */
    private static final class EventTally {
        private final long start;
        private final StringBuilder text = new StringBuilder();
        private long firstToken = -1;
        private int tokens;

        /** {@code start}: the request's {@link System#nanoTime()} before it was sent. */
        EventTally(long start) {
            this.start = start;
        }

        /** Takes one line of the stream; lines other than data events (blank separators, [DONE]) add nothing. */
        void accept(String line) {
            if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
                return;
            }
            Matcher content = CONTENT.matcher(line);
            if (content.find() && !content.group(1).isEmpty()) {
                if (firstToken < 0) {
                    firstToken = System.nanoTime() - start;
                }
                text.append(unescape(content.group(1)));
            }
            int usage = line.indexOf("\"completion_tokens\":");
            if (usage >= 0) {
                tokens = Integer.parseInt(line.substring(usage + 20).split("[,}]")[0].trim());
            }
            if (line.contains("\"error\"")) {
                throw new IllegalStateException("error event: " + line);
            }
        }

        /** The measurement, timed to now. */
        Measured measured() {
            return new Measured(firstToken, System.nanoTime() - start, tokens, text.toString());
        }
    }

    /**
     * JSON string escapes as the server writes them (hand-written: this module uses the public API alone, without a
     * JSON library, and the benchmark's client should cost as little as it can) (Jackson: \", \\, \n, \t,
     * \\uXXXX for other control characters).
     */
    private static String unescape(String json) {
        StringBuilder text = new StringBuilder(json.length());
        for (int i = 0; i < json.length(); i++) {
            char c = json.charAt(i);
            if (c != '\\') {
                text.append(c);
                continue;
            }
            char next = json.charAt(++i);
            switch (next) {
                case 'n' -> text.append('\n');
                case 't' -> text.append('\t');
                case 'r' -> text.append('\r');
                case 'b' -> text.append('\b');
                case 'f' -> text.append('\f');
                case 'u' -> {
                    text.append((char) Integer.parseInt(json.substring(i + 1, i + 5), 16));
                    i += 4;
                }
                default -> text.append(next);
            }
        }
        return text.toString();
    }
}
