/**
 * Internal: atomic file and folder writes (a temporary sibling, fsync, rename), used by every output the library
 * writes. Exported to bitdelta-cuda only; not public API.
 */
package org.bitdelta.internal.io;
