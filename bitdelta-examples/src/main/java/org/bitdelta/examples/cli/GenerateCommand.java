package org.bitdelta.examples.cli;

import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continue a prompt with the base and every given fine-tune at once: one loaded base, one batch on the"
                + " serving engine, each sequence through its own 1-bit delta.", "Prints each tenant's text under its name."})
final class GenerateCommand extends CliCommand {
    @Mixin
    BaseModelOption base;

    @Mixin
    TenantOptions tenantFiles;

    @Option(names = "--prompt", required = true, paramLabel = "TEXT", description = "the text to continue (BOS is added as the tokenizer does)")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "64", paramLabel = "N", description = "tokens to generate per tenant at most (default: ${DEFAULT-VALUE})")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", paramLabel = "T", description = "0 for greedy decoding (default), else the sampling temperature, at most 2")
    double temperature;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "seed of every tenant's sampler (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--no-base", description = "leave the base model itself out of the batch")
    boolean noBase;

    @Mixin
    BackendOption backend;

    @Mixin
    MemoryReportOption memoryReport;

    @Override
    public Integer call() {
        PrintWriter out = out();
        try (TensorBackend tensorBackend = backend.open();
             Engine engine = Engine.open(base.folder, EngineOptions.defaults().backend(tensorBackend))) {
            List<String> tenants = new ArrayList<>();
            if (!noBase) {
                tenants.add(Engine.BASE);
            }
            for (var entry : tenantFiles.deltas.entrySet()) {
                engine.addTenant(entry.getKey(), entry.getValue()); // the engine closes the files it loads
                tenants.add(entry.getKey());
            }
            if (tenants.isEmpty()) {
                throw new org.bitdelta.BitDeltaException("nothing to generate: --no-base and no --delta NAME=FILE");
            }
            List<Completion> completions = new ArrayList<>();
            long start = System.nanoTime();
            for (String tenant : tenants) {
                Request request = Request.text(tenant, prompt).maxTokens(maxTokens).temperature(temperature);
                completions.add(engine.submit(temperature > 0 ? request.seed(seed) : request)); // all in one batch
            }
            long generated = 0;
            for (Completion completion : completions) {
                CompletionResult result = completion.result();
                generated += result.tokens().length;
                out.printf(Locale.ROOT, "=== %s (%d tokens, %s)%n%s%s%n%n", result.tenant(), result.tokens().length,
                        result.finishReason().name().toLowerCase(Locale.ROOT), prompt, result.text());
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            out.printf(Locale.ROOT, "%d tenants in one batch: %d tokens in %.2f s (%.1f tokens/s)%n",
                    tenants.size(), generated, seconds, generated / seconds);
            memoryReport.printIfAsked(out, engine, tensorBackend.name());
        }
        return 0;
    }
}
