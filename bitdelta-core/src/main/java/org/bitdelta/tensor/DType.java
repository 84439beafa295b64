package org.bitdelta.tensor;

import java.util.Locale;

/** Element types of tensors, named as in the safetensors header. */
public enum DType {
    F32(4), F16(2), BF16(2), F64(8), U8(1), I8(1), I16(2), I32(4), I64(8), U16(2), U32(4), U64(8), BOOL(1);

    private final int byteSize;

    DType(int byteSize) {
        this.byteSize = byteSize;
    }

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    /** True for the floating-point types a weight may have. */
    public boolean isFloatingPoint() {
        return this == F32 || this == F16 || this == BF16 || this == F64;
    }

    /** The safetensors header name of this type ("F32", "BF16", ...). */
    public String safetensorsName() {
        return name();
    }

    /** Parses a safetensors dtype name; throws IllegalArgumentException naming the value for unknown ones. */
    public static DType fromSafetensorsName(String name) {
        for (DType type : values()) {
            if (type.name().equals(name)) {
                return type;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + name + "' (known: F32, F16, BF16, F64, U8, I8, I16, I32, I64, U16, U32, U64, BOOL)");
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
