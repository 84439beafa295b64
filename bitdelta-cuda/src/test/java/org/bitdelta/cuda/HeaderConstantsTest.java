package org.bitdelta.cuda;

import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.StepLibrary;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Java constants that mirror a {@code #define} of the C headers agree with it (no GPU, no library: the headers are
 * read as text). A mismatch would route a step to a kernel that refuses it, or check the library against the wrong ABI.
 */
class HeaderConstantsTest {
    private static final Path HEADERS = Path.of("src/main/cuda");

    /** The number of {@code #define NAME n} or of an enum's {@code NAME = n} in the header. */
    private static int define(String header, String name) throws IOException {
        Path file = HEADERS.resolve(header);
        assertTrue(Files.isRegularFile(file), "no " + file.toAbsolutePath());
        Matcher matcher = Pattern.compile("(?m)^\\s*(?:#define\\s+" + name + "\\s+|" + name + "\\s*=\\s*)(\\d+)\\b")
                .matcher(Files.readString(file));
        assertTrue(matcher.find(), header + " defines no " + name);
        return Integer.parseInt(matcher.group(1));
    }

    private static void assertMirrors(String header, String name, int javaValue) throws IOException {
        assertEquals(define(header, name), javaValue, "the Java mirror of " + name + " (" + header + ")");
    }

    @Test
    void javaMirrorsOfTheHeadersDefinesAgreeWithThem() throws IOException {
        assertMirrors("bitdelta_step.h", "BD_STEP_ABI_VERSION", StepLibrary.EXPECTED_ABI_VERSION);
        assertMirrors("bitdelta_step.h", "BD_STEP_VECTOR_ROWS", StepLibrary.VECTOR_ROWS);
        assertMirrors("bitdelta_step.h", "BD_STEP_TC_MAX_K", CudaDecoderDevice.TENSOR_CORE_MAX_INPUTS);
        assertMirrors("bitdelta_cuda.h", "BD_ABI_VERSION", CudaLibrary.EXPECTED_ABI_VERSION);
        assertMirrors("bitdelta_cuda.h", "BD_OK", CudaLibrary.OK);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_NULL_POINTER", CudaLibrary.ERROR_NULL_POINTER);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_BAD_SHAPE", CudaLibrary.ERROR_BAD_SHAPE);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_BAD_DTYPE", CudaLibrary.ERROR_BAD_DTYPE);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_WORKSPACE", CudaLibrary.ERROR_WORKSPACE);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_MISALIGNED", CudaLibrary.ERROR_MISALIGNED);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_CUDA", CudaLibrary.ERROR_CUDA);
        assertMirrors("bitdelta_cuda.h", "BD_ERR_NOT_BUILT", CudaLibrary.ERROR_NOT_BUILT);
        assertMirrors("bitdelta_cuda.h", "BD_DTYPE_F32", CudaLibrary.DTYPE_F32);
        assertMirrors("bitdelta_cuda.h", "BD_DTYPE_F16", CudaLibrary.DTYPE_F16);
        assertMirrors("bitdelta_cuda.h", "BD_DTYPE_BF16", CudaLibrary.DTYPE_BF16);
        assertMirrors("bitdelta_cuda.h", "BD_SCALE_PER_MATRIX", CudaLibrary.SCALE_PER_MATRIX);
        assertMirrors("bitdelta_cuda.h", "BD_SCALE_PER_ROW", CudaLibrary.SCALE_PER_ROW);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_AUTO", CudaLibrary.DECODE_AUTO);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_SPLIT_K", CudaLibrary.DECODE_SPLIT_K);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_PIPELINED", CudaLibrary.DECODE_PIPELINED);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_PIPELINED_M32", CudaLibrary.DECODE_PIPELINED_M32);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_BINARY", CudaLibrary.DECODE_BINARY);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_BINARY_M32", CudaLibrary.DECODE_BINARY_M32);
        assertMirrors("bitdelta_cuda.h", "BD_DECODE_BINARY_LEAN", CudaLibrary.DECODE_BINARY_LEAN);
    }
}
