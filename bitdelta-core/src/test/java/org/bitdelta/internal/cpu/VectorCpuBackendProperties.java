package org.bitdelta.internal.cpu;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import net.jqwik.api.constraints.IntRange;
import org.bitdelta.tensor.DType;

import java.util.Arrays;

/**
 * Random shapes beyond the fixed edge list of {@link VectorCpuBackendTest}: the Vector API backend equals the
 * scalar oracle within {@link VectorCpuBackendTest#TOLERANCE}. jqwik prints its seed on failure; the data of a
 * case comes from the {@code dataSeed} shown in the message, so {@code DeltaCase.random(dataSeed, ...)} replays it.
 */
class VectorCpuBackendProperties {
    static VectorCpuBackend backend;
    static final ScalarCpuBackend oracle = new ScalarCpuBackend();

    @BeforeContainer
    static void start() {
        backend = new VectorCpuBackend(2);
    }

    @AfterContainer
    static void stop() {
        backend.close();
    }

    @Property(tries = 300)
    void deltaProductMatchesOracle(@ForAll @IntRange(min = 1, max = 300) int inputs,
                                   @ForAll @IntRange(min = 1, max = 40) int outputs,
                                   @ForAll @IntRange(min = 1, max = 40) int rows,
                                   @ForAll @IntRange(min = 1, max = 6) int tenants,
                                   @ForAll @IntRange(min = 0, max = 2) int typeIndex, @ForAll boolean perRowScales,
                                   @ForAll long dataSeed) {
        DType weightType = VectorCpuBackendTest.WEIGHT_TYPES[typeIndex];
        VectorCpuBackendTest.DeltaCase data = VectorCpuBackendTest.DeltaCase.random(dataSeed, weightType, rows, outputs, inputs,
                tenants, perRowScales);
        VectorCpuBackendTest.assertCloseElementwise(data.product(oracle), data.product(backend), data.absoluteTermSums(), dataSeed,
                "dataSeed=" + dataSeed + " " + data.describe());
    }

    @Property(tries = 100)
    void denseProductDoesNotDependOnTheRowsAround(@ForAll @IntRange(min = 1, max = 200) int inputs,
                                                  @ForAll @IntRange(min = 1, max = 30) int outputs,
                                                  @ForAll @IntRange(min = 2, max = 40) int rows,
                                                  @ForAll long dataSeed) {
        // Row r of a batch equals row r computed alone: tiles and the decode/prefill switch never mix rows.
        VectorCpuBackendTest.DeltaCase data = VectorCpuBackendTest.DeltaCase.random(dataSeed, DType.BF16, rows, outputs, inputs, 1, false);
        float[] batch = new float[rows * outputs];
        backend.matmul(data.x(), rows, data.base(), batch);
        int row = Math.floorMod(dataSeed, rows);
        float[] alone = new float[outputs];
        backend.matmul(Arrays.copyOfRange(data.x(), row * inputs, (row + 1) * inputs), 1, data.base(), alone);
        float[] fromBatch = Arrays.copyOfRange(batch, row * outputs, (row + 1) * outputs);
        // Same products, but the 4-row tile and the 1-row kernel may sum in another order: compare to tolerance.
        VectorCpuBackendTest.assertClose(alone, fromBatch, dataSeed, "dataSeed=" + dataSeed + " row " + row + " of " + rows
                + ", M=" + outputs + " K=" + inputs);
    }
}
