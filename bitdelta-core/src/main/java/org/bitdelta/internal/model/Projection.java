package org.bitdelta.internal.model;

/** The seven projection matrices of a Llama/Mistral layer, each a {@link org.bitdelta.DeltaLinear}. */
public enum Projection {
    QUERY("self_attn.q_proj"),
    KEY("self_attn.k_proj"),
    VALUE("self_attn.v_proj"),
    OUTPUT("self_attn.o_proj"),
    GATE("mlp.gate_proj"),
    UP("mlp.up_proj"),
    DOWN("mlp.down_proj");

    private final String module;

    Projection(String module) {
        this.module = module;
    }

    /** The HF tensor name of this projection's weight in layer {@code layer}. */
    public String weightName(int layer) {
        return "model.layers." + layer + "." + module + ".weight";
    }
}
