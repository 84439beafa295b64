package org.bitdelta.server.internal;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * An error answered in OpenAI's shape: {@code {"error": {"message", "type", "param", "code"}}} with an HTTP status.
 * Thrown anywhere in a handler; {@link OpenAiRoutes} turns it into the response.
 */
public final class ApiError extends RuntimeException {
    private final int status;
    private final String type;
    private final String param;
    private final String code;

    public ApiError(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request is wrong; {@code param} names the field. */
    public static ApiError invalid(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, null, message);
    }

    /** 404 for a model (tenant) that is not loaded, as OpenAI answers it. */
    public static ApiError modelNotFound(String model, Object loaded) {
        return new ApiError(404, "invalid_request_error", "model", "model_not_found",
                "The model '" + model + "' does not exist: it is not loaded on this server (loaded: " + loaded + ")");
    }

    public static ApiError notFound(String message) {
        return new ApiError(404, "invalid_request_error", null, "not_found", message);
    }

    public int status() {
        return status;
    }

    public String type() {
        return type;
    }

    public String param() {
        return param;
    }

    public String code() {
        return code;
    }

    /** The error object as OpenAI writes it. */
    public ObjectNode toJson() {
        return Json.error(getMessage(), type, param, code);
    }
}
