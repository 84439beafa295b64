package org.bitdelta.internal.model;

import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderDevice.Norm;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.Projection.Group;
import org.bitdelta.spi.StepInputs;

/**
 * One step of the Llama/Mistral decoder, from token ids to logits, as the operations of a {@link DecoderDevice}:
 * the one path every backend runs. Per layer: RMSNorm → q/k/v (one product) → RoPE and the KV cache write →
 * causal grouped-query attention over the paged cache → output projection added to the residual; RMSNorm →
 * gate/up (one product) → SwiGLU → down projection added to the residual. Then the final RMSNorm and each output
 * row's tenant's lm_head.
 */
final class DecoderStep {
    private final DecoderDevice device;
    private final DecoderSpec spec;
    private final Activations residual;
    private final Activations normed;
    private final Activations queryKeyValue;
    private final Activations attended;
    private final Activations gateUp;
    private final Activations feedForward;
    private final Activations outputRows;
    private final Activations outputNormed;
    private final Activations logits;

    DecoderStep(DecoderDevice device) {
        this.device = device;
        this.spec = device.spec();
        int rows = spec.maxRows();
        this.residual = device.allocate("residual", rows, spec.hiddenSize());
        this.normed = device.allocate("normed", rows, spec.hiddenSize());
        this.queryKeyValue = device.allocate("q|k|v", rows, spec.width(Group.QKV));
        this.attended = device.allocate("attention", rows, spec.queryWidth());
        this.gateUp = device.allocate("gate|up", rows, spec.width(Group.GATE_UP));
        this.feedForward = device.allocate("silu(gate)*up", rows, spec.intermediateSize());
        this.outputRows = device.allocate("output rows", rows, spec.hiddenSize());
        this.outputNormed = device.allocate("output rows normed", rows, spec.hiddenSize());
        this.logits = device.allocate("logits", rows, spec.vocabularySize());
    }

    /** Runs the step on the device; its logits stay there ({@link #logits()}) until the next step. */
    void run(StepInputs inputs) {
        device.run(inputs, this::operations);
    }

    Activations logits() {
        return logits;
    }

    private void operations() {
        device.embed(residual);
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            // Attention block: x += o(attention(rope(q), rope(k), v)), q|k|v from norm(x)
            device.rmsNorm(residual, Norm.INPUT, layer, normed);
            device.project(layer, Group.QKV, normed, queryKeyValue, false);
            device.rotaryAndCache(layer, queryKeyValue);
            device.attention(layer, queryKeyValue, attended);
            device.project(layer, Group.ATTENTION_OUTPUT, attended, residual, true);

            // Feed-forward block (SwiGLU): x += down(silu(gate(norm(x))) ⊙ up(norm(x)))
            device.rmsNorm(residual, Norm.POST_ATTENTION, layer, normed);
            device.project(layer, Group.GATE_UP, normed, gateUp, false);
            device.swiGlu(gateUp, feedForward);
            device.project(layer, Group.FEED_FORWARD_OUTPUT, feedForward, residual, true);
        }
        device.gatherOutputRows(residual, outputRows);
        device.rmsNorm(outputRows, Norm.FINAL, 0, outputNormed);
        device.lmHead(outputNormed, logits);
    }
}
