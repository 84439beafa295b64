package org.bitdelta.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * A named, shaped view of little-endian bytes in a {@link MemorySegment}: a slice of a memory-mapped
 * safetensors file, a heap array, or native memory. Row-major, no strides: what safetensors stores.
 */
public record Tensor(String name, DType dtype, long[] shape, MemorySegment data) {

    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public Tensor {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        shape = shape.clone();
        long expected = elementCount(shape) * dtype.byteSize();
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException("tensor '" + name + "': " + data.byteSize() + " bytes for shape "
                    + Arrays.toString(shape) + " of " + dtype + " (expected " + expected + ")");
        }
    }

    /** A float32 tensor over a copy of {@code values}, on the heap. */
    public static Tensor ofFloats(String name, float[] values, long... shape) {
        MemorySegment segment = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
        MemorySegment.copy(values, 0, segment, FLOAT, 0, values.length);
        return new Tensor(name, DType.F32, shape, segment);
    }

    /** A zero-filled tensor on the heap (byte-array backed, so at most 2 GiB). */
    public static Tensor zeros(String name, DType dtype, long... shape) {
        long bytes = elementCount(shape) * dtype.byteSize();
        return new Tensor(name, dtype, shape, MemorySegment.ofArray(new byte[Math.toIntExact(bytes)]));
    }

    /** A zero-filled tensor in native memory owned by {@code arena}. */
    public static Tensor allocate(Arena arena, String name, DType dtype, long... shape) {
        long bytes = elementCount(shape) * dtype.byteSize();
        return new Tensor(name, dtype, shape, arena.allocate(bytes, 64));
    }

    public static long elementCount(long[] shape) {
        long count = 1;
        for (long dimension : shape) {
            if (dimension < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            }
            count = Math.multiplyExact(count, dimension);
        }
        return count;
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long dimension(int index) {
        return shape[index];
    }

    public long elementCount() {
        return elementCount(shape);
    }

    public long byteSize() {
        return data.byteSize();
    }

    /** The element at flat index {@code index} as a float (F32, F16, BF16 only). */
    public float getFloat(long index) {
        return switch (dtype) {
            case F32 -> data.get(FLOAT, index * 4);
            case F16 -> Float.float16ToFloat(data.get(SHORT, index * 2));
            case BF16 -> Float.intBitsToFloat((data.get(SHORT, index * 2) & 0xFFFF) << 16);
            default -> throw new UnsupportedOperationException("tensor '" + name + "' is " + dtype + ", not a float type");
        };
    }

    /** All elements as floats on the heap (F32, F16, BF16). For small tensors: tests, norms, embeddings rows. */
    public float[] toFloatArray() {
        float[] values = new float[Math.toIntExact(elementCount())];
        if (dtype == DType.F32) {
            MemorySegment.copy(data, FLOAT, 0, values, 0, values.length);
        } else {
            for (int i = 0; i < values.length; i++) {
                values[i] = getFloat(i);
            }
        }
        return values;
    }

    /** Same bytes under another name. */
    public Tensor withName(String newName) {
        return new Tensor(newName, dtype, shape, data);
    }

    /**
     * Same name, dtype, shape and the very same memory (segment base object, address and size). Cheap: a tensor
     * may be gigabytes of mapped weights, so equality never reads the data; {@link #contentEquals} does.
     */
    @Override
    public boolean equals(Object other) {
        return other instanceof Tensor that && name.equals(that.name) && dtype == that.dtype
                && Arrays.equals(shape, that.shape) && data.equals(that.data);
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), data.address(), data.byteSize());
    }

    /** Whether {@code other} has the same dtype, shape and data bytes (names may differ). Reads every byte of both. */
    public boolean contentEquals(Tensor other) {
        return dtype == other.dtype && Arrays.equals(shape, other.shape) && data.mismatch(other.data) == -1;
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }
}
