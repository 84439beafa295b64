package org.bitdelta.server.internal;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Writes server-sent events as OpenAI's streams carry them: {@code data: JSON} and a blank line per event, and
 * {@code data: [DONE]} at the end. Events are buffered until {@link #flush()}, so that a consumer that fell behind
 * sends what it caught up with in one write. Hand-written because an event is two lines; the SSE module's sink
 * adds nothing here, and OpenAI's clients expect exactly this framing (a space after "data:").
 *
 * <p>Any failure to write means the client is gone: it surfaces as {@link ClientGoneException}.
 */
final class SseWriter {
    private static final byte[] DATA = "data: ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] END = "\n\n".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] DONE = "data: [DONE]\n\n".getBytes(StandardCharsets.US_ASCII);

    private final OutputStream out;

    /** Buffers up to a flush: an event is several small writes, which should leave as one. */
    SseWriter(OutputStream out) {
        this.out = new BufferedOutputStream(out, 8192);
    }

    void data(JsonNode event) {
        write(DATA);
        write(Json.bytes(event));
        write(END);
    }

    /** An event whose JSON comes in parts (see {@link OpenAiResponses#textChunkParts}). */
    void data(byte[][] parts) {
        write(DATA);
        for (byte[] part : parts) {
            write(part);
        }
        write(END);
    }

    void done() {
        write(DONE);
    }

    /** A comment line, which SSE clients skip: a heartbeat that also finds out whether the client is still there. */
    void comment(String text) {
        write((": " + text + "\n\n").getBytes(StandardCharsets.UTF_8));
    }

    void flush() {
        try {
            out.flush();
        } catch (IOException | RuntimeException e) {
            throw new ClientGoneException(e);
        }
    }

    private void write(byte[] bytes) {
        try {
            out.write(bytes);
        } catch (IOException | RuntimeException e) {
            throw new ClientGoneException(e);
        }
    }

    /** The client closed the connection (or it broke) while its stream was being written. */
    static final class ClientGoneException extends RuntimeException {
        ClientGoneException(Throwable cause) {
            super("the client went away: " + cause, cause);
        }
    }
}
