package org.bitdelta.compress;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.GenerationMode;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.SyntheticModels;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Sign packing, the optimal scale, save/load and merge, each against arithmetic done independently here. */
class CompressionProperties {
    private static Path folder;
    private static int counter;

    @BeforeContainer
    static void createFolder() throws IOException {
        folder = Files.createTempDirectory("compression-properties-");
    }

    @AfterContainer
    static void removeFolder() throws IOException {
        AtomicFiles.deleteRecursively(folder);
    }

    private static synchronized Path fresh(String name) {
        return folder.resolve(name + "-" + (counter++));
    }

    /** A pair of one-matrix models [rows, cols] in {@code dtype}, written as HF folders. */
    private static Path[] pair(DType dtype, int rows, int cols, long seed) throws IOException {
        Random random = new Random(seed);
        float[] baseValues = SyntheticModels.gaussian(random, rows * cols, 0.05);
        float[] tunedValues = baseValues.clone();
        for (int i = 0; i < tunedValues.length; i++) {
            tunedValues[i] += (float) (random.nextGaussian() * 0.005);
        }
        if (tunedValues.length > 2) {
            tunedValues[0] = baseValues[0]; // an exact zero delta must count as +scale (Δ >= 0)
        }
        String name = "model.layers.0.mlp.up_proj.weight";
        Map<String, Tensor> base = new LinkedHashMap<>();
        base.put(name, SyntheticModels.tensor(name, dtype, baseValues, rows, cols));
        Map<String, Tensor> tuned = new LinkedHashMap<>();
        tuned.put(name, SyntheticModels.tensor(name, dtype, tunedValues, rows, cols));
        Path basePath = fresh("base");
        Path tunedPath = fresh("tuned");
        Files.createDirectories(basePath);
        Files.createDirectories(tunedPath);
        write(basePath, base);
        write(tunedPath, tuned);
        return new Path[]{basePath, tunedPath};
    }

    private static void write(Path folder, Map<String, Tensor> tensors) {
        org.bitdelta.internal.safetensors.SafetensorsWriter.write(folder.resolve("model.safetensors"), Map.of(),
                tensors.values().stream().map(org.bitdelta.internal.safetensors.SafetensorsWriter.Source::of).toList(), false);
    }

    @Provide
    Arbitrary<Integer> columns() {
        return Arbitraries.oneOf(Arbitraries.integers().between(1, 200), Arbitraries.of(255, 256, 257, 1023, 4096, 4097, 11008, 14337));
    }

    /** Every width from 1 to 200, each exactly once (exhaustive), with the dtype and row count varying with it. */
    @Property(generation = GenerationMode.EXHAUSTIVE)
    void packedSignsRoundTripAtEveryWidthFrom1To200(@ForAll @IntRange(min = 1, max = 200) int cols) throws IOException {
        DType[] dtypes = {DType.F32, DType.BF16, DType.F16};
        checkRoundTrip(cols, 1 + cols % 4, dtypes[cols % 3], 1000L + cols);
    }

    /** Random widths, small and large (4097, 11008, 14337, ...), random rows, dtypes and seeds. */
    @Property(tries = 60)
    void packedSignsRoundTripAtRandomWidths(@ForAll("columns") int cols, @ForAll @IntRange(min = 1, max = 5) int rows,
                                            @ForAll("dtypes") DType dtype, @ForAll long seed) throws IOException {
        checkRoundTrip(cols, rows, dtype, seed);
    }

    /** Every sign bit, the padding, and the per-row and per-matrix scales, through save and load. */
    private void checkRoundTrip(int cols, int rows, DType dtype, long seed) throws IOException {
        Path[] models = pair(dtype, rows, cols, seed);
        Path file = fresh("delta");
        try (ModelWeights base = ModelWeights.open(models[0]); ModelWeights tuned = ModelWeights.open(models[1])) {
            String name = base.names().getFirst();
            float[] baseValues = Independent.floats(base.tensor(name));
            float[] tunedValues = Independent.floats(tuned.tensor(name));
            try (DeltaModel perRow = BitDelta.compress(models[0], models[1], CompressOptions.defaults().perRowScales(true))) {
                perRow.save(file);
            }
            try (DeltaModel loaded = DeltaModel.load(file)) {
                BinaryDelta delta = loaded.matrix(name);
                assertEquals(rows, delta.rows());
                assertEquals(cols, delta.cols());
                for (int row = 0; row < rows; row++) {
                    for (int col = 0; col < cols; col++) {
                        int index = row * cols + col;
                        int expected = tunedValues[index] - baseValues[index] >= 0 ? 1 : -1;
                        assertEquals(expected, delta.sign(row, col), "sign [" + row + ", " + col + "], seed " + seed);
                    }
                    for (int padding = cols; padding < delta.bytesPerRow() * 8; padding++) {
                        int bit = (delta.signs().get(ValueLayout.JAVA_BYTE, (long) row * delta.bytesPerRow() + padding / 8) >>> (padding % 8)) & 1;
                        assertEquals(0, bit, "padding bit " + padding + " of row " + row);
                    }
                    assertEquals(Independent.meanAbsoluteDeltaOfRow(baseValues, tunedValues, row, cols), delta.scale(row),
                            "row scale " + row + ", seed " + seed);
                }
            }
            try (DeltaModel perMatrix = BitDelta.compress(models[0], models[1])) {
                assertEquals(Independent.meanAbsoluteDelta(baseValues, tunedValues), perMatrix.matrix(name).scale(0), "seed " + seed);
                assertEquals(1, perMatrix.matrix(name).scales().length);
            }
        }
    }

    @Provide
    Arbitrary<DType> dtypes() {
        return Arbitraries.of(DType.F32, DType.BF16, DType.F16);
    }

    /** mean|Δ| minimises ‖Δ − a·sign(Δ)‖² over scalars a: no other scalar tried does better. */
    @Property(tries = 200)
    void meanAbsoluteDeltaIsTheBestScalar(@ForAll @IntRange(min = 1, max = 300) int count, @ForAll long seed) {
        Random random = new Random(seed);
        double[] delta = new double[count];
        double sum = 0;
        for (int i = 0; i < count; i++) {
            delta[i] = random.nextGaussian() * Math.exp(random.nextGaussian());
            sum += Math.abs(delta[i]);
        }
        double best = sum / count;
        double bestError = error(delta, best);
        for (int trial = 0; trial < 50; trial++) {
            double other = switch (trial % 3) {
                case 0 -> best * (1 + (random.nextDouble() - 0.5) * 1e-3);
                case 1 -> best * random.nextDouble() * 3;
                default -> Math.abs(delta[random.nextInt(count)]);
            };
            assertTrue(bestError <= error(delta, other) * (1 + 1e-12),
                    "scale " + other + " beats mean|Δ| = " + best + " (seed " + seed + ")");
        }
    }

    private static double error(double[] delta, double scale) {
        double total = 0;
        for (double value : delta) {
            double approximation = value >= 0 ? scale : -scale;
            total += (value - approximation) * (value - approximation);
        }
        return total;
    }

    /** merge(base, compress(base, ft)) holds round(base ± a) in every element, bit for bit. */
    @Property(tries = 40)
    void mergeEqualsBasePlusScaledSignsAfterRounding(@ForAll("dtypes") DType dtype, @ForAll @IntRange(min = 1, max = 40) int rows,
                                                     @ForAll("columns") int cols, @ForAll boolean perRow, @ForAll long seed) throws IOException {
        if ((long) rows * cols > 200_000) {
            rows = Math.max(1, 200_000 / cols);
        }
        Path[] models = pair(dtype, rows, cols, seed);
        Path out = fresh("merged");
        try (DeltaModel delta = BitDelta.compress(models[0], models[1], CompressOptions.defaults().perRowScales(perRow))) {
            BitDelta.merge(models[0], delta, out);
        }
        try (ModelWeights base = ModelWeights.open(models[0]); ModelWeights tuned = ModelWeights.open(models[1]);
             ModelWeights merged = ModelWeights.open(out)) {
            String name = base.names().getFirst();
            float[] baseValues = Independent.floats(base.tensor(name));
            float[] tunedValues = Independent.floats(tuned.tensor(name));
            Tensor result = merged.tensor(name);
            assertEquals(dtype, result.dtype());
            float matrixScale = Independent.meanAbsoluteDelta(baseValues, tunedValues);
            for (int row = 0; row < rows; row++) {
                float scale = perRow ? Independent.meanAbsoluteDeltaOfRow(baseValues, tunedValues, row, cols) : matrixScale;
                for (int col = 0; col < cols; col++) {
                    int index = row * cols + col;
                    float expected = Independent.merged(baseValues[index], tunedValues[index] - baseValues[index] >= 0, scale, dtype);
                    assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(result.getFloat(index)),
                            "element [" + row + ", " + col + "] " + dtype + ", seed " + seed);
                }
            }
        }
    }
}
