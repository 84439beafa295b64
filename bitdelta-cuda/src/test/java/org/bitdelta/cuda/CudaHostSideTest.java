package org.bitdelta.cuda;

import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Host-only checks that run everywhere (no GPU needed): which pairs compressMatrix takes, the BF16 conversion. */
class CudaHostSideTest {
    @Test
    void compressMatrixTakesOnlyPairsTheKernelTakes() {
        Tensor f16 = Tensor.zeros("a", DType.F16, 3, 5);
        Tensor bf16 = Tensor.zeros("b", DType.BF16, 3, 5);
        assertTrue(CudaBackend.compressible(f16, Tensor.zeros("a2", DType.F16, 3, 5)));
        assertTrue(CudaBackend.compressible(bf16, Tensor.zeros("b2", DType.BF16, 3, 5)));
        assertFalse(CudaBackend.compressible(Tensor.zeros("f", DType.F32, 3, 5), Tensor.zeros("f2", DType.F32, 3, 5)), "F32");
        assertFalse(CudaBackend.compressible(f16, bf16), "different dtypes");
        assertFalse(CudaBackend.compressible(f16, Tensor.zeros("a3", DType.F16, 5, 3)), "different shapes");
        assertFalse(CudaBackend.compressible(Tensor.zeros("v", DType.F16, 15), Tensor.zeros("v2", DType.F16, 15)), "1-D");
    }

    @Test
    void bfloat16RoundsToNearestEven() {
        assertEquals((short) 0x3F80, CudaBackend.toBfloat16(1.0f));
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
        assertEquals((short) 0x3F80, CudaBackend.toBfloat16(1.0f + 0x1.0p-8f));
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6 = 0x3F82).
        assertEquals((short) 0x3F82, CudaBackend.toBfloat16(1.0f + 3 * 0x1.0p-8f));
        assertEquals((short) 0x3F81, CudaBackend.toBfloat16(1.0f + 0x1.0p-7f + 0x1.0p-12f));
        assertEquals((short) 0xBF80, CudaBackend.toBfloat16(-1.0f));
        assertTrue(Float.isNaN(Float.intBitsToFloat((CudaBackend.toBfloat16(Float.NaN) & 0xFFFF) << 16)));
        assertEquals(Float.POSITIVE_INFINITY, Float.intBitsToFloat((CudaBackend.toBfloat16(Float.MAX_VALUE) & 0xFFFF) << 16));
    }
}
