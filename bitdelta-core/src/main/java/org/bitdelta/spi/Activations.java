package org.bitdelta.spi;

/**
 * A device buffer of activations, [rows, columns], allocated by a {@link DecoderDevice}. Opaque: the device
 * chooses where it lives and its element type; the model code only passes it between operations.
 */
public interface Activations {
    String name();

    int rows();

    int columns();
}
