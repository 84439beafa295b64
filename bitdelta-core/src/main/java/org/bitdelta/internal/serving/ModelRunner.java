package org.bitdelta.internal.serving;

import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.Sequence;

import java.util.ArrayList;
import java.util.List;

/**
 * Runs a scheduled step on the decoder: every request's chunk as rows of one batch, and a token sampled for
 * each request whose chunk ends its sequence, drawn with its own seed and token index (so a sampled answer does
 * not depend on the batch either).
 */
final class ModelRunner {
    private final Decoder decoder;

    ModelRunner(Decoder decoder) {
        this.decoder = decoder;
    }

    /**
     * @return per entry of {@code step}: the sampled token (−1 where none was asked), and the failure of an entry
     * whose tenant was removed or does not fit the device budget (the step ran without it)
     */
    Decoder.StepResult run(ScheduledStep step) {
        List<Sequence> sequences = new ArrayList<>(step.entries().size());
        List<int[]> chunks = new ArrayList<>(step.entries().size());
        List<Decoder.TokenSampling> sampling = new ArrayList<>(step.entries().size());
        for (ScheduledStep.Entry entry : step.entries()) {
            RequestState state = entry.state();
            PreparedRequest request = state.request;
            sequences.add(state.sequence);
            chunks.add(entry.chunk());
            sampling.add(entry.sample()
                    ? new Decoder.TokenSampling(request.temperature(), request.topK(), request.topP(), request.seed(), state.generated())
                    : null);
        }
        return decoder.step(sequences, chunks, sampling);
    }
}
