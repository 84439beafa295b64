package org.bitdelta.internal.format;

/** Float → bfloat16 with round-to-nearest-even, as PyTorch's {@code tensor.to(torch.bfloat16)} does. */
public final class FloatRounding {
    private FloatRounding() {
    }

    public static short toBfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            return (short) ((bits >>> 16) | 0x40); // stay NaN: keep a quiet mantissa bit
        }
        int roundingBias = 0x7FFF + ((bits >>> 16) & 1);
        return (short) ((bits + roundingBias) >>> 16);
    }
}
