package org.bitdelta.examples.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/** {@code --base DIR --finetuned DIR}, shared by the commands that read a fine-tune against its base. */
final class ModelPairOptions {
    @Option(names = "--base", required = true, paramLabel = "DIR", description = "Hugging Face folder of the base model")
    Path base;

    @Option(names = "--finetuned", required = true, paramLabel = "DIR", description = "Hugging Face folder of the fine-tune")
    Path finetuned;
}
