package org.bitdelta.examples.cli;

import org.bitdelta.BinaryDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Show what a .bitdelta file holds: tensors, scales, and its size against the fine-tune's.")
final class InspectCommand extends CliCommand {
    @Parameters(paramLabel = "FILE", description = "a .bitdelta file")
    Path file;

    @Override
    public Integer call() {
        try (DeltaModel delta = DeltaModel.load(file)) {
            print(out(), file, delta);
        }
        return 0;
    }

    static void print(PrintWriter out, Path file, DeltaModel delta) {
        out.printf("file:              %s%n", file);
        out.printf("format version:    %d%n", delta.formatVersion());
        out.printf("library version:   %s%n", delta.libraryVersion().orElse("-"));
        out.printf("fine-tune:         %s%n", delta.finetunedName().orElse("-"));
        out.printf("scales:            %s%n", delta.scaleGranularity());
        out.printf("distilled:         %s%n", delta.distillation().map(InspectCommand::describe).orElse("no"));
        out.printf("base fingerprint:  %s%n", delta.baseFingerprint());
        out.println();
        out.printf("%-52s %-7s %-16s %-30s %12s%n", "tensor", "kind", "shape", "scale", "bytes");
        long signBytes = 0;
        long scaleBytes = 0;
        for (BinaryDelta matrix : delta.matrices()) {
            float[] scales = matrix.scales();
            String scale;
            if (scales.length == 1) {
                scale = String.format(Locale.ROOT, "%.6g", scales[0]);
            } else {
                double sum = 0;
                float min = Float.POSITIVE_INFINITY;
                float max = Float.NEGATIVE_INFINITY;
                for (float value : scales) {
                    sum += value;
                    min = Math.min(min, value);
                    max = Math.max(max, value);
                }
                scale = String.format(Locale.ROOT, "rows %.3g..%.3g mean %.3g", min, max, sum / scales.length);
            }
            long bytes = matrix.signs().byteSize() + 4L * scales.length;
            signBytes += matrix.signs().byteSize();
            scaleBytes += 4L * scales.length;
            out.printf(Locale.ROOT, "%-52s %-7s %-16s %-30s %12d%n", matrix.name(), "1-bit", matrix.rows() + "x" + matrix.cols(), scale, bytes);
        }
        long wholeBytes = 0;
        for (Tensor tensor : delta.tensors().values()) {
            wholeBytes += tensor.byteSize();
            out.printf(Locale.ROOT, "%-52s %-7s %-16s %-30s %12d%n", tensor.name(), tensor.dtype(), shape(tensor.shape()), "-", tensor.byteSize());
        }
        long fileBytes = Sizes.fileBytes(file);
        long finetunedBytes = delta.finetunedWeightBytes().orElse(0);
        out.println();
        out.printf(Locale.ROOT, "1-bit matrices:    %d, signs %s, scales %s%n", delta.matrices().size(), Sizes.bytes(signBytes), Sizes.bytes(scaleBytes));
        out.printf(Locale.ROOT, "whole tensors:     %d, %s%n", delta.tensors().size(), Sizes.bytes(wholeBytes));
        out.printf(Locale.ROOT, "file:              %s (%d bytes; header %d bytes)%n", Sizes.bytes(fileBytes), fileBytes,
                fileBytes - signBytes - scaleBytes - wholeBytes);
        if (finetunedBytes > 0) {
            out.printf(Locale.ROOT, "fine-tune weights: %s (%d bytes): the delta is %.1fx smaller (%.2f%% of it)%n",
                    Sizes.bytes(finetunedBytes), finetunedBytes, (double) finetunedBytes / fileBytes, 100.0 * fileBytes / finetunedBytes);
        }
    }

    private static String describe(DeltaModel.Distillation distillation) {
        return String.format(Locale.ROOT, "%d steps of %d x %d tokens, lr %s, weight decay %s, seed %d; loss %.6g -> %.6g",
                distillation.steps(), distillation.batchSize(), distillation.sequenceLength(), distillation.learningRate(),
                distillation.weightDecay(), distillation.seed(), distillation.firstLoss(), distillation.lastLoss());
    }

    private static String shape(long[] shape) {
        return Arrays.toString(shape).replace(" ", "");
    }
}
