package org.bitdelta.spi;

/**
 * The host-side description of one decoder step, written to the device before its operations run. A step's
 * rows are tokens: a prefill chunk gives several rows of one sequence, a decode step one row per sequence. Arrays
 * may be longer than the counts; only the first {@code rows} (or {@code sequences}, {@code outputRows}) entries
 * count.
 *
 * @param rows              tokens in this step
 * @param tokens            [rows] token ids
 * @param slots             [rows] tenant slot of each row (0: the base model)
 * @param positions         [rows] position of each token in its sequence
 * @param sequenceOfRow     [rows] index of the row's sequence in this step (0 .. sequences − 1)
 * @param cacheSlots        [rows] where the row's key and value go in the KV cache: block · blockSize + offset
 * @param sequences         sequences in this step
 * @param blocksPerSequence width of {@code blockTables}
 * @param blockTables       [sequences, blocksPerSequence] KV block ids of each sequence, in position order
 * @param outputRows        rows whose logits are wanted
 * @param outputRowIndex    [outputRows] the row index of each
 */
public record StepInputs(int rows, int[] tokens, int[] slots, int[] positions, int[] sequenceOfRow, int[] cacheSlots,
                         int sequences, int blocksPerSequence, int[] blockTables, int outputRows, int[] outputRowIndex) {

    /** Whether this is a decode step: one row per sequence. */
    public boolean isDecode() {
        return rows == sequences;
    }

    /** Tenant slot of output row {@code index}. */
    public int outputSlot(int index) {
        return slots[outputRowIndex[index]];
    }
}
