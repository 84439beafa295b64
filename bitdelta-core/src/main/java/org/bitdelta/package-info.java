/**
 * The public API of bitdelta: compressing a fine-tune against its base ({@link org.bitdelta.BitDelta}), the
 * compressed fine-tune and its .bitdelta file ({@link org.bitdelta.DeltaModel}, {@link org.bitdelta.BinaryDelta}),
 * merging it back, and scale distillation ({@link org.bitdelta.ScaleDistiller}).
 */
package org.bitdelta;
