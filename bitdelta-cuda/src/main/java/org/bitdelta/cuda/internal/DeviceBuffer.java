package org.bitdelta.cuda.internal;

/** One device allocation: its address and size in bytes. Owned by the {@link DeviceScope} that made it. */
public record DeviceBuffer(long address, long bytes, String purpose) {
    /** The address {@code offset} bytes in, checked against the size. */
    public long at(long offset) {
        if (offset < 0 || offset > bytes) {
            throw new IndexOutOfBoundsException(purpose + ": offset " + offset + " outside " + bytes + " bytes");
        }
        return address + offset;
    }
}
