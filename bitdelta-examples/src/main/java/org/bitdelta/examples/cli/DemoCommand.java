package org.bitdelta.examples.cli;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.inference.DecoderModel;
import org.bitdelta.inference.Perplexity;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

@Command(name = "demo", mixinStandardHelpOptions = true,
        description = {"Run the whole pipeline on the bundled stories260K family (no arguments needed):",
                "compress both fine-tunes, serve them as tenants of one loaded base, compare perplexities of the "
                        + "base, each fine-tune and its 1-bit compression on the bundled texts, and show each model's answer "
                        + "to the same prompt.",
                "With --serve it ends by starting the OpenAI-compatible server and its side-by-side page on them."})
final class DemoCommand extends CliCommand {
    static final String BASE = "stories260K";
    /** Fine-tune → the held-out text of what it was tuned on. */
    static final Map<String, String> FINETUNES = new LinkedHashMap<>();
    static final String GENERAL_TEXT = "tinystories-valid-30k.txt";

    static {
        FINETUNES.put("stories260K-ft-alice", "alice.heldout.txt");
        FINETUNES.put("stories260K-ft-shakespeare", "shakespeare.heldout.txt");
    }

    @Option(names = "--models", paramLabel = "DIR",
            description = "folder holding stories260K and its fine-tunes (default: the ones bundled with bitdelta)")
    Path models;

    @Option(names = "--texts", paramLabel = "DIR",
            description = "folder holding the eval texts (default: the ones bundled with bitdelta)")
    Path texts;

    @Option(names = "--out", paramLabel = "DIR",
            description = "keep the .bitdelta files in DIR (default: a temporary folder, removed at the end)")
    Path out;

    @Option(names = "--max-windows", defaultValue = "64", paramLabel = "N",
            description = "perplexity windows of 256 tokens per text, at most (default: ${DEFAULT-VALUE})")
    int maxWindows;

    @Option(names = "--prompt", defaultValue = "Once upon a time", paramLabel = "TEXT",
            description = "the prompt every model continues in step 3 (default: \"${DEFAULT-VALUE}\")")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "48", paramLabel = "N",
            description = "tokens each model generates in step 3 at most (default: ${DEFAULT-VALUE})")
    int maxTokens;

    @Option(names = "--serve", description = "end by serving the base and both deltas over HTTP (see `bitdelta serve`) until interrupted")
    boolean serve;

    /** Where and how --serve serves. */
    @Mixin
    HttpOptions http;

    @Mixin
    BackendOption backend;

    record Row(String text, String model, double perplexity, int windows) {
    }

    @Override
    public Integer call() throws IOException {
        PrintWriter out = out();
        Path modelFolder = models != null ? models : bundled("models", BASE);
        Path textFolder = texts != null ? texts : bundled("text", GENERAL_TEXT);
        Path workFolder = this.out != null ? Files.createDirectories(this.out) : Files.createTempDirectory("bitdelta-demo-");
        List<Row> rows = new ArrayList<>();
        try (TensorBackend tensorBackend = backend.open()) {
            out.printf("bitdelta demo: base %s, fine-tunes %s (from %s), on the %s backend%n%n", BASE,
                    String.join(", ", FINETUNES.keySet()), modelFolder, tensorBackend.name());
            Path base = modelFolder.resolve(BASE);
            out.println("1. compress each fine-tune against the base");
            for (String name : FINETUNES.keySet()) {
                compress(out, base, modelFolder.resolve(name), workFolder.resolve(name + ".bitdelta"), tensorBackend);
            }
            out.println();
            out.println("2. serve both deltas as tenants of one loaded base, and each full fine-tune on its own, and measure perplexity");
            try (DecoderModel served = DecoderModel.load(base, tensorBackend)) {
                List<DeltaModel> deltas = new ArrayList<>();
                try {
                    for (String name : FINETUNES.keySet()) {
                        DeltaModel delta = DeltaModel.load(workFolder.resolve(name + ".bitdelta"));
                        deltas.add(delta);
                        served.addTenant(name, delta);
                    }
                    int[] general = served.tokenizer().encode(CliFiles.readText(textFolder.resolve(GENERAL_TEXT)));
                    rows.add(evaluate(served, DecoderModel.BASE, GENERAL_TEXT, "base", general));
                    for (Map.Entry<String, String> finetune : FINETUNES.entrySet()) {
                        String name = finetune.getKey();
                        int[] heldout = served.tokenizer().encode(CliFiles.readText(textFolder.resolve(finetune.getValue())));
                        rows.add(evaluate(served, DecoderModel.BASE, finetune.getValue(), "base", heldout));
                        try (DecoderModel full = DecoderModel.load(modelFolder.resolve(name), tensorBackend)) {
                            rows.add(evaluate(full, DecoderModel.BASE, finetune.getValue(), name + " (full)", heldout));
                            rows.add(evaluate(full, DecoderModel.BASE, GENERAL_TEXT, name + " (full)", general));
                        }
                        rows.add(evaluate(served, name, finetune.getValue(), name + " (1-bit delta)", heldout));
                        rows.add(evaluate(served, name, GENERAL_TEXT, name + " (1-bit delta)", general));
                    }
                } finally {
                    deltas.forEach(DeltaModel::close);
                }
            }
            out.println();
            out.printf("%-28s %-44s %10s %8s%n", "text", "model", "perplexity", "windows");
            rows.stream().sorted(java.util.Comparator.comparing(Row::text)).forEach(row ->
                    out.printf(Locale.ROOT, "%-28s %-44s %10.4f %8d%n", row.text(), row.model(), row.perplexity(), row.windows()));
            out.println();
            out.println("A 1-bit delta should land near its full fine-tune on the text it was tuned for, far below the base.");
            out.println();
            generateAndServe(out, base, workFolder, tensorBackend);
            out.println(this.out != null ? "the .bitdelta files are in " + workFolder
                    : "(the .bitdelta files were written to a temporary folder and removed; keep them with --out DIR)");
        } finally {
            if (this.out == null) {
                CliFiles.deleteRecursively(workFolder);
            }
        }
        return 0;
    }

    /** The tenant name a bundled fine-tune is served under: "stories260K-ft-alice" as "alice". */
    static String tenantName(String finetune) {
        String marker = "-ft-";
        int at = finetune.indexOf(marker);
        return at < 0 ? finetune : finetune.substring(at + marker.length());
    }

    /** Step 3: every model answers the same prompt, all in one batch of the serving engine; then --serve. */
    private void generateAndServe(PrintWriter out, Path base, Path workFolder, TensorBackend tensorBackend) {
        try (Engine engine = Engine.open(base, EngineOptions.defaults().backend(tensorBackend))) {
            List<String> models = new ArrayList<>();
            List<String> labels = new ArrayList<>();
            models.add(engine.baseAlias() != null ? engine.baseAlias() : Engine.BASE);
            labels.add(models.getFirst() + " (the base)");
            for (String finetune : FINETUNES.keySet()) {
                engine.addTenant(tenantName(finetune), workFolder.resolve(finetune + ".bitdelta"));
                models.add(tenantName(finetune));
                labels.add(tenantName(finetune) + " (1-bit delta of " + finetune + ")");
            }
            out.printf("3. generate: each model continues the same prompt (greedy, up to %d tokens), all in one batch on one loaded base%n",
                    maxTokens);
            out.printf("   prompt: \"%s\"%n", prompt);
            List<Completion> completions = new ArrayList<>();
            for (String model : models) {
                completions.add(engine.submit(Request.text(model, prompt).maxTokens(maxTokens).temperature(0)));
            }
            for (int i = 0; i < models.size(); i++) {
                CompletionResult result = completions.get(i).result();
                if (result.error() != null) {
                    throw new BitDeltaException("generating with " + models.get(i) + " failed: " + result.error());
                }
                out.printf(Locale.ROOT, "%n   [%s] %d tokens, %s%n", labels.get(i), result.usage().completionTokens(), result.finishDetail());
                out.println(indent(prompt + result.text()));
            }
            out.println();
            if (serve) {
                out.println("4. serve them: open the page, tick the models, and compare their answers side by side");
                ServeCommand.serve(engine, http.serverOptions(), tensorBackend.name(), out);
            } else {
                out.println("Serve them over an OpenAI-compatible API with a side-by-side web page: bitdelta demo --serve");
            }
        }
    }

    private static String indent(String text) {
        return "   " + text.strip().replace("\n", "\n   ");
    }

    private static void compress(PrintWriter out, Path base, Path finetuned, Path file, TensorBackend backend) {
        long start = System.nanoTime();
        try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults().backend(backend))) {
            delta.save(file, true);
            double milliseconds = (System.nanoTime() - start) / 1e6;
            long fileBytes = Sizes.fileBytes(file);
            long finetunedBytes = delta.finetunedWeightBytes().orElseThrow();
            BinaryDelta first = delta.matrices().iterator().next();
            out.printf(Locale.ROOT, "   %s: %d matrices -> 1 bit, %d tensors kept whole; %s -> %s (%.1fx smaller) in %.0f ms%n",
                    finetuned.getFileName(), delta.matrices().size(), delta.tensors().size(), Sizes.bytes(finetunedBytes),
                    Sizes.bytes(fileBytes), (double) finetunedBytes / fileBytes, milliseconds);
            out.printf(Locale.ROOT, "     e.g. %s: %dx%d signs in %d bytes, scale %.4g%n", first.name(), first.rows(),
                    first.cols(), first.signs().byteSize(), first.scale(0));
        }
    }

    private Row evaluate(DecoderModel model, String tenant, String text, String label, int[] tokens) {
        Perplexity.Result result = Perplexity.evaluate(model, tenant, tokens, 256, maxWindows);
        return new Row(text, label, result.perplexity(), result.windows());
    }

    /** The launcher passes -Dbitdelta.home=<repository>; the bundled models and texts live in core's test resources. */
    static Path bundled(String folderName, String expectedEntry) {
        String home = System.getProperty("bitdelta.home");
        if (home == null) {
            throw new BitDeltaException("no --models/--texts given and -Dbitdelta.home is unset: run the demo through the ./bitdelta launcher");
        }
        Path folder = Path.of(home, "bitdelta-core", "src", "test", "resources", folderName);
        if (!Files.exists(folder.resolve(expectedEntry))) {
            throw new BitDeltaException(folder + ": the bundled " + folderName + " are missing (expected " + expectedEntry + " there)");
        }
        return folder;
    }
}
