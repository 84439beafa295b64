package org.bitdelta.testing;

import org.bitdelta.internal.safetensors.SafetensorsFile;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A golden-logits file: input_ids (I32) and float32 logits arrays, read whole onto the heap. */
public record Golden(int[] inputIds, Map<String, float[]> logits) {

    public static Golden read(Path file) {
        try (SafetensorsFile safetensors = SafetensorsFile.open(file)) {
            int[] inputIds = ints(safetensors, "input_ids", file);
            Map<String, float[]> logits = new HashMap<>();
            for (String name : safetensors.names()) {
                if (name.startsWith("logits")) {
                    logits.put(name, safetensors.tensor(name).toFloatArray());
                }
            }
            return new Golden(inputIds, logits);
        }
    }

    /** The I32 array {@code name} of a golden file (token ids), read whole. */
    public static int[] ints(Path file, String name) {
        try (SafetensorsFile safetensors = SafetensorsFile.open(file)) {
            return ints(safetensors, name, file);
        }
    }

    private static int[] ints(SafetensorsFile safetensors, String name, Path file) {
        Tensor tensor = safetensors.tensor(name);
        assertEquals(DType.I32, tensor.dtype(), file + ": " + name + " dtype");
        int[] values = new int[Math.toIntExact(tensor.elementCount())];
        for (int i = 0; i < values.length; i++) {
            values[i] = tensor.data().get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4L * i);
        }
        return values;
    }

    /** The logits of that name; fails the test when the file has none. */
    public float[] logits(String name) {
        float[] values = logits.get(name);
        assertTrue(values != null, "golden file has no " + name + " (has " + logits.keySet() + ")");
        return values;
    }
}
