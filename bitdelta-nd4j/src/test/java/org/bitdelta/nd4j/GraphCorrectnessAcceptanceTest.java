package org.bitdelta.nd4j;

import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

/**
 * {@link GraphCorrectnessTest} on the tinyllama pair of the data folder: the graphs of a real BF16 pair with an
 * untied lm_head and a 4096-token vocabulary against PyTorch's logits, and array recycling over its larger graph.
 */
class GraphCorrectnessAcceptanceTest {

    @Test
    void teacherAndStudentMatchGoldenLogitsOfTinyllama() {
        GraphCorrectnessTest.checkGolden(TestData.acceptance("models/tinyllama-shakespeare-base"),
                TestData.acceptance("models/tinyllama-shakespeare-finetuned"), TestData.acceptance("golden/tinyllama-shakespeare.safetensors"));
    }

    @Test
    void recycledArraysGiveTheSameLossAndGradientsAsSameDiffsOwnPath() {
        GraphCorrectnessTest.checkRecycledArrays(TestData.acceptance("models/tinyllama-shakespeare-base"),
                TestData.acceptance("models/tinyllama-shakespeare-finetuned"), TestData.acceptance("text/calibration/pretrain.heldout.txt"), 42L);
    }
}
