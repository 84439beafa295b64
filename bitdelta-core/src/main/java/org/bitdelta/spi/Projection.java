package org.bitdelta.spi;

/**
 * The seven projection matrices of a Llama/Mistral layer (HF {@code Linear.weight} layout [out, in]), and the
 * four products a decoder step runs over them: q/k/v as one, gate/up as one.
 */
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

    /**
     * The products of a step: each multiplies one input by the listed matrices stacked along their outputs
     * (rows), writing [rows, Σ out] in the listed order.
     */
    public enum Group {
        /** [q | k | v] = x · [W_q; W_k; W_v]ᵀ, from the attention norm's output. */
        QKV(QUERY, KEY, VALUE),
        /** The attention output projection; added to the residual stream. */
        ATTENTION_OUTPUT(OUTPUT),
        /** [gate | up] = x · [W_gate; W_up]ᵀ, from the feed-forward norm's output. */
        GATE_UP(GATE, UP),
        /** The feed-forward output projection; added to the residual stream. */
        FEED_FORWARD_OUTPUT(DOWN);

        private final Projection[] members;

        Group(Projection... members) {
            this.members = members;
        }

        public Projection[] members() {
            return members.clone();
        }
    }
}
