/**
 * Internal: the .bitdelta format behind the public API: its metadata keys, compression, merging, the base
 * fingerprint and the fine-tune's non-weight files. Exported to bitdelta-cuda only; not public API.
 */
package org.bitdelta.internal.format;
