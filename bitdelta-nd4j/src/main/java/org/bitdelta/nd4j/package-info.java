/**
 * Scale distillation on ND4J SameDiff: {@link org.bitdelta.nd4j.Nd4jScaleDistiller}, the
 * {@link org.bitdelta.ScaleDistiller} that {@code ScaleDistiller.load()} finds, and its training graph.
 * Users reach it through that interface alone; the rest is implementation. Class path only.
 */
package org.bitdelta.nd4j;
