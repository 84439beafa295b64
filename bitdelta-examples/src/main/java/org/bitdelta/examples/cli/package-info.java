/**
 * The {@code bitdelta} command line (picocli): {@link org.bitdelta.examples.cli.Main} and one command per job,
 * written against the public API alone. An application, not a library: nothing here is API.
 */
package org.bitdelta.examples.cli;
