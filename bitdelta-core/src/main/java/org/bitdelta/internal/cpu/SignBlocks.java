package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A private copy of a delta's packed signs re-laid out for the table-lookup kernel
 * ({@link VectorKernels#lookup16x1}), and the cache that keeps one per delta.
 *
 * <p>Layout: the packed byte matrix [rows, bytesPerRow] of the format, cut into blocks of {@link #BLOCK_ROWS}
 * output rows and transposed within each block: byte {@code (block * bytesPerRow + octet) * 16 + i} is byte
 * {@code octet} of row {@code block * 16 + i}. So the 16 bytes the kernel needs for 16 rows x 8 columns (low
 * nibble: columns 8·octet .. +3, high nibble: the next 4) are contiguous, and a block's signs are one run of
 * memory. Rows past the end of the matrix are zero bytes. The copy is as large as the packed signs (plus at most
 * 15 padding rows); the {@code .bitdelta} format and the delta itself are unchanged.
 *
 * <p>The cache is keyed by the identity of the delta's sign segment (so {@link BinaryDelta#withScales} shares the
 * copy), held weakly: when a tenant is removed and its delta becomes unreachable, the garbage collector clears the
 * key and the next lookup drops the copy; {@link #clear} (on backend close) drops all of them.
 */
final class SignBlocks {
    /** Output rows per block: the lanes of one 512-bit float vector. */
    static final int BLOCK_ROWS = 16;

    private final ConcurrentHashMap<Key, byte[]> copies = new ConcurrentHashMap<>();
    private final ReferenceQueue<MemorySegment> cleared = new ReferenceQueue<>();

    /** The re-laid-out signs of {@code delta}, built on first use. */
    byte[] of(BinaryDelta delta) {
        expungeCleared();
        MemorySegment signs = delta.signs();
        byte[] copy = copies.get(new Key(signs, null));
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

    /** Bytes a copy takes for a [rows, cols] delta; must fit a Java array. */
    static long bytes(int rows, int cols) {
        return (long) blocks(rows) * BLOCK_ROWS * BinaryDelta.bytesPerRow(cols);
    }

    static int blocks(int rows) {
        return (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    }

    static byte[] relayout(BinaryDelta delta) {
        int rows = delta.rows();
        int bytesPerRow = delta.bytesPerRow();
        MemorySegment signs = delta.signs();
        byte[] copy = new byte[Math.toIntExact(bytes(rows, delta.cols()))];
        byte[] row = new byte[bytesPerRow];
        for (int m = 0; m < rows; m++) {
            MemorySegment.copy(signs, ValueLayout.JAVA_BYTE, (long) m * bytesPerRow, row, 0, bytesPerRow);
            int base = (m / BLOCK_ROWS) * bytesPerRow * BLOCK_ROWS + m % BLOCK_ROWS;
            for (int octet = 0; octet < bytesPerRow; octet++) {
                copy[base + octet * BLOCK_ROWS] = row[octet];
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
