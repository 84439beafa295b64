package org.bitdelta.examples.cli;

import org.bitdelta.DeltaModel;
import org.bitdelta.inference.DecoderModel;
import org.bitdelta.inference.Generator;
import org.bitdelta.inference.Tokenizer;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continue a prompt with the base and every given fine-tune at once: one loaded base, one batch,"
                + " each sequence through its own 1-bit delta.", "Prints each tenant's text under its name."})
final class GenerateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--base", required = true, paramLabel = "DIR", description = "Hugging Face folder of the base model (with tokenizer.json)")
    Path base;

    @Option(names = "--delta", paramLabel = "NAME=FILE", description = "a tenant: its name and its .bitdelta file (repeatable)")
    LinkedHashMap<String, Path> deltas = new LinkedHashMap<>();

    @Option(names = "--prompt", required = true, paramLabel = "TEXT", description = "the text to continue (BOS is added as the tokenizer does)")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "64", paramLabel = "N", description = "tokens to generate per tenant at most (default: ${DEFAULT-VALUE})")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", paramLabel = "T", description = "0 for greedy decoding (default), else the sampling temperature")
    double temperature;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "seed of every tenant's sampler (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--no-base", description = "leave the base model itself out of the batch")
    boolean noBase;

    @Mixin
    BackendOption backend;

    @Option(names = "--verbose", description = "also print the memory the backend holds: base, each tenant, KV cache, workspace")
    boolean verbose;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        List<DeltaModel> opened = new ArrayList<>();
        try (TensorBackend tensorBackend = backend.open();
             DecoderModel model = DecoderModel.load(base, tensorBackend)) {
            List<String> tenants = new ArrayList<>();
            if (!noBase) {
                tenants.add(DecoderModel.BASE);
            }
            for (var entry : deltas.entrySet()) {
                DeltaModel delta = DeltaModel.load(entry.getValue());
                opened.add(delta);
                model.addTenant(entry.getKey(), delta);
                tenants.add(entry.getKey());
            }
            if (tenants.isEmpty()) {
                throw new org.bitdelta.BitDeltaException("nothing to generate: --no-base and no --delta NAME=FILE");
            }
            Tokenizer tokenizer = model.tokenizer();
            int[] promptIds = tokenizer.encode(prompt);
            List<Generator.Request> requests = new ArrayList<>();
            for (String tenant : tenants) {
                requests.add(new Generator.Request(tenant, promptIds, maxTokens, temperature, seed));
            }
            long start = System.nanoTime();
            List<Generator.Result> results = new Generator(model).generate(requests);
            double seconds = (System.nanoTime() - start) / 1e9;
            long generated = 0;
            for (Generator.Result result : results) {
                int[] tokens = result.tokens();
                generated += tokens.length;
                int[] all = new int[promptIds.length + tokens.length];
                System.arraycopy(promptIds, 0, all, 0, promptIds.length);
                System.arraycopy(tokens, 0, all, promptIds.length, tokens.length);
                out.printf(Locale.ROOT, "=== %s (%d tokens, %s)%n%s%n%n", result.tenant(), tokens.length,
                        result.finishReason().name().toLowerCase(Locale.ROOT), tokenizer.decode(all));
            }
            out.printf(Locale.ROOT, "%d tenants in one batch: %d tokens in %.2f s (%.1f tokens/s)%n",
                    tenants.size(), generated, seconds, generated / seconds);
            if (verbose) {
                MemoryReport.print(out, model, tensorBackend.name());
            }
        } finally {
            opened.forEach(DeltaModel::close);
        }
        return 0;
    }
}
