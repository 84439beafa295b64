package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A private copy of a delta's packed signs re-laid out for the table-lookup kernel
 * ({@link VectorKernels#lookup16x1}), and the cache that keeps one per delta.
 *
 * <p>Layout: the packed rows of the format cut into 32-bit words (32 columns; the last word of a row zero-padded)
 * and blocks of {@link #BLOCK_ROWS} output rows, transposed within each block: int
 * {@code (block * words + w) * 16 + i} is word {@code w} (little-endian bytes 4w .. 4w+3) of row
 * {@code block * 16 + i}. So one 512-bit load gives the kernel 32 columns of 16 rows, one row per lane, and a
 * block's signs are one run of memory. Rows past the end of the matrix are zero. The copy is as large as the
 * packed signs (plus at most 15 padding rows and 3 padding bytes per row), in native memory; the {@code .bitdelta}
 * format and the delta itself are unchanged.
 *
 * <p>The cache is keyed by the identity of the delta's sign segment (so {@link BinaryDelta#withScales} shares the
 * copy), held weakly: when a tenant is removed and its delta becomes unreachable, the garbage collector clears the
 * key and the next lookup drops the copy, whose memory the collector then frees; {@link #clear} (on backend close)
 * drops all of them.
 */
final class SignBlocks {
    /** Output rows per block: the lanes of one 512-bit float vector. */
    static final int BLOCK_ROWS = 16;

    private final ConcurrentHashMap<Key, MemorySegment> copies = new ConcurrentHashMap<>();
    private final ReferenceQueue<MemorySegment> cleared = new ReferenceQueue<>();

    /** The re-laid-out signs of {@code delta}, built on first use. */
    MemorySegment of(BinaryDelta delta) {
        expungeCleared();
        MemorySegment signs = delta.signs();
        MemorySegment copy = copies.get(new Key(signs, null));
        if (copy != null) {
            return copy;
        }
        return copies.computeIfAbsent(new Key(signs, cleared), key -> relayout(delta));
    }

    /** Copies held now (for tests). */
    int size() {
        expungeCleared();
        return copies.size();
    }

    void clear() {
        copies.clear();
    }

    /** 32-bit sign words per row of a delta with {@code cols} columns. */
    static int words(int cols) {
        return (BinaryDelta.bytesPerRow(cols) + 3) / 4;
    }

    /** Bytes a copy takes for a [rows, cols] delta. */
    static long bytes(int rows, int cols) {
        return (long) blocks(rows) * BLOCK_ROWS * words(cols) * 4;
    }

    static int blocks(int rows) {
        return (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    }

    static MemorySegment relayout(BinaryDelta delta) {
        int rows = delta.rows();
        int bytesPerRow = delta.bytesPerRow();
        int words = words(delta.cols());
        MemorySegment signs = delta.signs();
        // Native memory that the garbage collector frees once the segment is unreachable (Arena.ofAuto): outside the
        // Java heap, like the weights it sits next to; zero-filled, so padding rows and bytes are 0.
        MemorySegment copy = Arena.ofAuto().allocate(bytes(rows, delta.cols()), 64);
        byte[] row = new byte[words * 4];
        MemorySegment rowWords = MemorySegment.ofArray(row);
        for (int m = 0; m < rows; m++) {
            MemorySegment.copy(signs, ValueLayout.JAVA_BYTE, (long) m * bytesPerRow, row, 0, bytesPerRow);
            long base = ((long) (m / BLOCK_ROWS) * words * BLOCK_ROWS + m % BLOCK_ROWS) * 4;
            for (int w = 0; w < words; w++) {
                copy.set(VectorKernels.INT_LE, base + (long) w * BLOCK_ROWS * 4, rowWords.get(VectorKernels.INT_LE, 4L * w));
            }
        }
        return copy;
    }

    private void expungeCleared() {
        for (Object key; (key = cleared.poll()) != null; ) {
            copies.remove(key);
        }
    }

    /** A weak identity key: equal to another key only while both refer to the same live segment object. */
    private static final class Key extends WeakReference<MemorySegment> {
        private final int hash;

        Key(MemorySegment segment, ReferenceQueue<MemorySegment> queue) {
            super(segment, queue);
            hash = System.identityHashCode(segment);
        }

        @Override
        public int hashCode() {
            return hash;
        }

        @Override
        public boolean equals(Object other) {
            if (this == other) {
                return true;
            }
            if (!(other instanceof Key key)) {
                return false;
            }
            MemorySegment referent = get();
            return referent != null && referent == key.get();
        }
    }
}
