package org.bitdelta.examples.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/** {@code --base DIR}, shared by the commands that run the base model: its folder, tokenizer included. */
final class BaseModelOption {
    @Option(names = "--base", required = true, paramLabel = "DIR", description = "Hugging Face folder of the base model (with tokenizer.json)")
    Path folder;
}
