/**
 * Whole-pipeline benchmarks run as plain programs (see docs/benchmarks.md): compression throughput on a synthetic
 * model, and multi-tenant decoding. Written against the public API alone; not API themselves.
 */
package org.bitdelta.examples.bench;
