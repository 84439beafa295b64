/**
 * JMH benchmarks of the CPU backend's products and kernels (see docs/benchmarks-cpu.md). They reach into
 * bitdelta-core's internal CPU backend on the class path; not API, never deployed.
 */
package org.bitdelta.benchmarks;
