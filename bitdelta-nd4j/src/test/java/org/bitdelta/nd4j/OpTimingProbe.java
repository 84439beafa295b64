package org.bitdelta.nd4j;

import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.List;
import java.util.Map;

/** Throwaway: times single ND4J ops. */
public final class OpTimingProbe {
    interface Body { void run(); }

    static void time(String name, int repeats, Body body) {
        body.run();
        long start = System.nanoTime();
        for (int i = 0; i < repeats; i++) {
            body.run();
        }
        System.err.printf("%-40s %.3f ms%n", name, (System.nanoTime() - start) / 1e6 / repeats);
    }

    public static void main(String[] args) {
        INDArray x = Nd4j.rand(DataType.FLOAT, 512, 256);
        INDArray w = Nd4j.rand(DataType.FLOAT, 256, 4096);
        INDArray w2 = Nd4j.rand(DataType.FLOAT, 256, 688);
        time("mmul 512x256x4096", 10, () -> x.mmul(w));
        time("mmul 512x256x688", 20, () -> x.mmul(w2));
        INDArray q = Nd4j.rand(DataType.FLOAT, 512, 32);
        time("scores 512x32x512 (transB)", 50, () -> Nd4j.gemm(q, q, false, true));
        INDArray s = Nd4j.rand(DataType.FLOAT, 512, 512);
        time("softmax 512x512", 50, () -> Nd4j.nn().softmax(s, 1));
        time("add 512x4096", 50, () -> x.mmul(w).addi(1));

        SameDiff sd = SameDiff.create();
        SDVariable in = sd.placeHolder("in", DataType.FLOAT, 512, 256);
        SDVariable weight = sd.constant("w", w2);
        SDVariable scale = sd.var("a", Nd4j.ones(DataType.FLOAT, 1, 688));
        SDVariable signs = sd.constant("s", Nd4j.rand(DataType.FLOAT, 256, 688));
        SDVariable y = in.mmul(weight.add(signs.mul(scale)));
        y.mul(y).mean("loss");
        sd.setLossVariables("loss");
        Map<String, INDArray> feed = Map.of("in", x);
        time("samediff fwd one projection", 20, () -> sd.output(feed, "loss"));
        time("samediff grad one projection", 20, () -> sd.calculateGradientsAndOutputs(feed, List.of("loss"), List.of("a")));
        SameDiff sd2 = SameDiff.create();
        SDVariable in2 = sd2.placeHolder("in", DataType.FLOAT, 512, 256);
        SDVariable z = in2;
        for (int i = 0; i < 200; i++) {
            z = z.add(1.0);
        }
        z.mean("out");
        time("samediff 200 scalar adds on 512x256", 20, () -> sd2.output(Map.of("in", x), "out"));
        SameDiff sd3 = SameDiff.create();
        SDVariable in3 = sd3.placeHolder("in", DataType.FLOAT, 512, 256);
        SDVariable sl = in3.get(org.nd4j.autodiff.samediff.SDIndex.interval(0L, 512L), org.nd4j.autodiff.samediff.SDIndex.interval(32L, 64L));
        sl.mean("out");
        time("samediff column slice", 50, () -> sd3.output(Map.of("in", x), "out"));
    }
}
