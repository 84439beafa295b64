package org.bitdelta.server.internal;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.function.Predicate;

/** One strict JSON mapper (trailing tokens and duplicate keys refused) and the typed reads a request needs. */
public final class Json {
    public static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            // error messages say where the body broke, never echo it
            .disable(StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION)
            .build();
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private Json() {
    }

    public static ObjectNode object() {
        return NODES.objectNode();
    }

    /** Parses a request body that must be one JSON object; anything else is a 400 saying where it broke. */
    public static ObjectNode parseObject(byte[] body) {
        if (body.length == 0) {
            throw ApiError.invalid(null, "The request body is empty; it must be a JSON object");
        }
        JsonNode node;
        try {
            node = MAPPER.readTree(body);
        } catch (JsonProcessingException e) {
            throw ApiError.invalid(null, "The request body is not valid JSON: " + e.getOriginalMessage() + locationOf(e));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (node == null || !node.isObject()) {
            throw ApiError.invalid(null, "The request body must be a JSON object, got " + (node == null ? "nothing" : node.getNodeType()));
        }
        return (ObjectNode) node;
    }

    private static String locationOf(JsonProcessingException e) {
        return e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")";
    }

    public static byte[] bytes(JsonNode node) {
        try {
            return MAPPER.writeValueAsBytes(node);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write JSON", e);
        }
    }

    public static String string(JsonNode node) {
        return new String(bytes(node), StandardCharsets.UTF_8);
    }

    public static ObjectNode error(String message, String type, String param, String code) {
        ObjectNode error = object();
        error.put("message", message);
        error.put("type", type);
        error.put("param", param);
        error.put("code", code);
        ObjectNode body = object();
        body.set("error", error);
        return body;
    }

    // ------------------------------------------------------------------ typed fields (null node: absent or null)

    /** The field's value, or null where it is absent or JSON null. */
    public static JsonNode field(ObjectNode body, String name) {
        JsonNode node = body.get(name);
        return node == null || node.isNull() ? null : node;
    }

    public static String requiredString(ObjectNode body, String name) {
        if (field(body, name) == null) {
            throw ApiError.invalid(name, "'" + name + "' is required");
        }
        return optionalString(body, name);
    }

    public static String optionalString(ObjectNode body, String name) {
        JsonNode node = field(body, name, JsonNode::isTextual, "a string");
        return node == null ? null : node.textValue();
    }

    public static Boolean optionalBoolean(ObjectNode body, String name) {
        JsonNode node = field(body, name, JsonNode::isBoolean, "true or false");
        return node == null ? null : node.booleanValue();
    }

    public static Double optionalNumber(ObjectNode body, String name) {
        JsonNode node = field(body, name, JsonNode::isNumber, "a number");
        return node == null ? null : node.doubleValue();
    }

    /** As {@link #field(ObjectNode, String)}, refused unless it is of the {@code kind} described. */
    private static JsonNode field(ObjectNode body, String name, Predicate<JsonNode> kind, String description) {
        JsonNode node = field(body, name);
        if (node != null && !kind.test(node)) {
            throw ApiError.invalid(name, "'" + name + "' must be " + description + ", got " + describe(node));
        }
        return node;
    }

    /** An integer field; a number with a fraction or beyond the long range is refused. */
    public static Long optionalInteger(ObjectNode body, String name) {
        JsonNode node = field(body, name);
        if (node == null) {
            return null;
        }
        if (node.isIntegralNumber() && node.canConvertToLong()) {
            return node.longValue();
        }
        if (node.isNumber() && node.doubleValue() == Math.rint(node.doubleValue()) && Math.abs(node.doubleValue()) < 0x1p53) {
            return (long) node.doubleValue();
        }
        throw ApiError.invalid(name, "'" + name + "' must be an integer, got " + describe(node));
    }

    public static String describe(JsonNode node) {
        String text = node.toString();
        if (text.length() > 40) {
            text = text.substring(0, 37) + "...";
        }
        return node.getNodeType().name().toLowerCase(java.util.Locale.ROOT) + " " + text;
    }
}
