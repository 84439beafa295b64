package org.bitdelta.serving;

import java.util.Objects;

/**
 * One message of a chat: its role ("system", "user", "assistant", or whatever the model's chat template
 * accepts) and its text.
 */
public record ChatMessage(String role, String content) {
    public ChatMessage {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
        if (role.isBlank()) {
            throw new InvalidRequestException("messages", "a chat message needs a role (system, user, assistant, ...)");
        }
    }

    public static ChatMessage system(String content) {
        return new ChatMessage("system", content);
    }

    public static ChatMessage user(String content) {
        return new ChatMessage("user", content);
    }

    public static ChatMessage assistant(String content) {
        return new ChatMessage("assistant", content);
    }
}
