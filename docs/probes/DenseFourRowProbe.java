package org.bitdelta.internal.cpu;

import jdk.incubator.vector.*;
import java.lang.foreign.*;
import java.nio.ByteOrder;
import java.util.*;
import java.util.concurrent.*;

// Session 3 ad-hoc probe behind docs/benchmarks-cpu.md "Tried in session 3": the 4-row BF16 dense product, the
// library's widening kernel (VectorKernels.dot4x4Bf16, called, not copied) against the pair-lane kernel against a
// plain read of the same weights (the floor, measured in the same run), interleaved in one JVM. It sits in the
// kernels' package to call them; build bitdelta-core first (mvn -pl bitdelta-core -Dexec.skip=true compile), then:
//   javac --add-modules jdk.incubator.vector -cp bitdelta-core/target/classes -d /tmp/probe docs/probes/DenseFourRowProbe.java
//   java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
//        -cp bitdelta-core/target/classes:/tmp/probe org.bitdelta.internal.cpu.DenseFourRowProbe 4096 4096 2
public class DenseFourRowProbe {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    static final VectorSpecies<Short> S = ShortVector.SPECIES_256;

    static final IntVector HIGH = IntVector.broadcast(I, 0xFFFF0000);
    // pairs kernel: xp holds per 32-col block: 16 even then 16 odd values
    static void dot4x4Pairs(MemorySegment w, long row0, long rowBytes, int K, float[] xp, int x0, int x1, int x2, int x3, float[] y, int yi, int M) {
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
            a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long r1 = row0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes;
        for (int k = 0; k < K; k += 32) {
            long o = k * 2L;
            IntVector p0 = IntVector.fromMemorySegment(I, w, row0 + o, ByteOrder.LITTLE_ENDIAN);
            IntVector p1 = IntVector.fromMemorySegment(I, w, r1 + o, ByteOrder.LITTLE_ENDIAN);
            IntVector p2 = IntVector.fromMemorySegment(I, w, r2 + o, ByteOrder.LITTLE_ENDIAN);
            IntVector p3 = IntVector.fromMemorySegment(I, w, r3 + o, ByteOrder.LITTLE_ENDIAN);
            FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), o0 = p0.and(HIGH).reinterpretAsFloats();
            FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), o1 = p1.and(HIGH).reinterpretAsFloats();
            FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), o2 = p2.and(HIGH).reinterpretAsFloats();
            FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), o3 = p3.and(HIGH).reinterpretAsFloats();
            FloatVector xe = FloatVector.fromArray(F, xp, x0 + k), xo = FloatVector.fromArray(F, xp, x0 + k + 16);
            a00 = o0.fma(xo, e0.fma(xe, a00)); a01 = o1.fma(xo, e1.fma(xe, a01)); a02 = o2.fma(xo, e2.fma(xe, a02)); a03 = o3.fma(xo, e3.fma(xe, a03));
            xe = FloatVector.fromArray(F, xp, x1 + k); xo = FloatVector.fromArray(F, xp, x1 + k + 16);
            a10 = o0.fma(xo, e0.fma(xe, a10)); a11 = o1.fma(xo, e1.fma(xe, a11)); a12 = o2.fma(xo, e2.fma(xe, a12)); a13 = o3.fma(xo, e3.fma(xe, a13));
            xe = FloatVector.fromArray(F, xp, x2 + k); xo = FloatVector.fromArray(F, xp, x2 + k + 16);
            a20 = o0.fma(xo, e0.fma(xe, a20)); a21 = o1.fma(xo, e1.fma(xe, a21)); a22 = o2.fma(xo, e2.fma(xe, a22)); a23 = o3.fma(xo, e3.fma(xe, a23));
            xe = FloatVector.fromArray(F, xp, x3 + k); xo = FloatVector.fromArray(F, xp, x3 + k + 16);
            a30 = o0.fma(xo, e0.fma(xe, a30)); a31 = o1.fma(xo, e1.fma(xe, a31)); a32 = o2.fma(xo, e2.fma(xe, a32)); a33 = o3.fma(xo, e3.fma(xe, a33));
        }
        y[yi] = a00.reduceLanes(VectorOperators.ADD); y[yi+1] = a01.reduceLanes(VectorOperators.ADD); y[yi+2] = a02.reduceLanes(VectorOperators.ADD); y[yi+3] = a03.reduceLanes(VectorOperators.ADD);
        y[yi+M] = a10.reduceLanes(VectorOperators.ADD); y[yi+M+1] = a11.reduceLanes(VectorOperators.ADD); y[yi+M+2] = a12.reduceLanes(VectorOperators.ADD); y[yi+M+3] = a13.reduceLanes(VectorOperators.ADD);
        y[yi+2*M] = a20.reduceLanes(VectorOperators.ADD); y[yi+2*M+1] = a21.reduceLanes(VectorOperators.ADD); y[yi+2*M+2] = a22.reduceLanes(VectorOperators.ADD); y[yi+2*M+3] = a23.reduceLanes(VectorOperators.ADD);
        y[yi+3*M] = a30.reduceLanes(VectorOperators.ADD); y[yi+3*M+1] = a31.reduceLanes(VectorOperators.ADD); y[yi+3*M+2] = a32.reduceLanes(VectorOperators.ADD); y[yi+3*M+3] = a33.reduceLanes(VectorOperators.ADD);
    }

    static float readOnly(MemorySegment w, long row0, long rowBytes, int K) {
        IntVector a0 = IntVector.zero(I), a1 = a0, a2 = a0, a3 = a0;
        long r1 = row0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes;
        for (int k = 0; k < K; k += 32) {
            long o = k * 2L;
            a0 = a0.add(IntVector.fromMemorySegment(I, w, row0 + o, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(IntVector.fromMemorySegment(I, w, r1 + o, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(IntVector.fromMemorySegment(I, w, r2 + o, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(IntVector.fromMemorySegment(I, w, r3 + o, ByteOrder.LITTLE_ENDIAN));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }
    public static void main(String[] a) throws Exception {
        int M = Integer.parseInt(a[0]), K = Integer.parseInt(a[1]), threads = Integer.parseInt(a[2]);
        int rows = 4;
        long bytes = (long) M * K * 2;
        int layers = (int) Math.max(2, (256L << 20) / bytes + 1);
        Arena arena = Arena.ofShared();
        MemorySegment[] ws = new MemorySegment[layers];
        SplittableRandom rnd = new SplittableRandom(42);
        for (int l = 0; l < layers; l++) {
            ws[l] = arena.allocate(bytes, 64);
            for (long i = 0; i < bytes / 2; i++) ws[l].set(ValueLayout.JAVA_SHORT_UNALIGNED, i * 2, (short) (Float.floatToIntBits((float) rnd.nextDouble(-1, 1)) >>> 16));
        }
        float[] x = new float[rows * K];
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextDouble(-1, 1);
        float[] xp = new float[rows * K];
        for (int r = 0; r < rows; r++) for (int b = 0; b < K; b += 32) for (int i = 0; i < 16; i++) { xp[r*K + b + i] = x[r*K + b + 2*i]; xp[r*K + b + 16 + i] = x[r*K + b + 2*i + 1]; }
        float[] y1 = new float[rows * M], y2 = new float[rows * M], y3 = new float[rows * M];
        ForkJoinPool pool = new ForkJoinPool(threads);
        int chunks = threads * 4;
        long rowBytes = K * 2L;
        for (int rep = 0; rep < 3; rep++) {
            for (int variant = 0; variant < 3; variant++) {
                long[] t = new long[60];
                for (int c = 0; c < 60; c++) {
                    MemorySegment w = ws[c % layers];
                    float[] y = variant == 0 ? y1 : variant == 1 ? y2 : y3;  // the read variant writes y3, not the compared outputs
                    long t0 = System.nanoTime();
                    final int v = variant;
                    List<ForkJoinTask<?>> tasks = new ArrayList<>();
                    for (int ch = 0; ch < chunks; ch++) {
                        int s = M * ch / chunks / 4 * 4, e = M * (ch + 1) / chunks / 4 * 4;
                        tasks.add(pool.submit(() -> {
                            for (int m = s; m < e; m += 4) {
                                if (v == 0) VectorKernels.dot4x4Bf16(w, m * rowBytes, rowBytes, K, x, 0, K, 2*K, 3*K, y, m, M + m, 2*M + m, 3*M + m);
                                else if (v == 2) y[m] = readOnly(w, m * rowBytes, rowBytes, K);
                                else dot4x4Pairs(w, m * rowBytes, rowBytes, K, xp, 0, K, 2*K, 3*K, y, m, M);
                            }
                        }));
                    }
                    for (var tk : tasks) tk.join();
                    t[c] = System.nanoTime() - t0;
                }
                long[] s = Arrays.copyOfRange(t, 15, 60); Arrays.sort(s);
                System.out.printf("rep %d %s: min %d us median %d us%n", rep, new String[]{"current","pairs  ","read   "}[variant], s[0] / 1000, s[s.length / 2] / 1000);
            }
        }
        double md = 0; for (int i = 0; i < y1.length; i++) md = Math.max(md, Math.abs(y1[i] - y2[i]) / Math.max(1e-3, Math.abs(y1[i])));
        System.out.println("max rel diff (current vs pairs) " + md);
    }
}
