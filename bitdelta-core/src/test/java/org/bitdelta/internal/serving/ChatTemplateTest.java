package org.bitdelta.internal.serving;

import org.bitdelta.BitDeltaException;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link ChatTemplate} against Python: every expected string below is what jinja2 3.1 renders with transformers'
 * settings for apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks and lstrip_blocks, loopcontrols,
 * its tojson filter and raise_exception), for the same template, messages and special tokens.
 */
class ChatTemplateTest {
    /** A ChatML template as in bitdelta-core/src/test/python/make_fixtures.py (BOS written by the template, trim filter, raise_exception). */
    static final String CHATML = "{{ bos_token }}{% for message in messages %}{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}<|im_start|>{{ message['role'] }}\n"
            + "{{ message['content'] | trim }}<|im_end|>\n"
            + "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            + "{% endif %}";

    /** Llama 2's template: system folded into the first user turn, alternation enforced by raise_exception, .strip(). */
    static final String LLAMA2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    /** Python string and dict methods, loop variables, tojson with and without indent, whitespace control. */
    static final String FEATURES = "{%- for message in messages -%}\n"
            + "{%- if message.role.startswith('sys') -%}\n"
            + "[SYS {{ loop.index }}/{{ loop.length }}]{{ message.content.upper() }}|{{ message.content.lstrip().rstrip('. ') }}\n"
            + "{%- elif message.get('role') == 'user' -%}\n"
            + "[USER{% if loop.last %} last{% endif %}] {{ message.content.replace('sea', 'ocean') }} {{ message.content.split(' ')|length }} words\n"
            + "{%- else -%}\n"
            + "[{{ message.role|upper }}] {{ message | tojson }}\n"
            + "{%- endif %}\n"
            + "\n"
            + "{% endfor -%}\n"
            + "{{ messages[0] | tojson(indent=2) }}\n"
            + "{%- if add_generation_prompt %}\n"
            + "<start>{% endif %}";

    static final List<ChatMessage> MESSAGES = List.of(
            ChatMessage.system(" You are a helpful bard. "),
            ChatMessage.user("Speak of the sea."),
            ChatMessage.assistant("The sea is “deep” — 深い."),
            ChatMessage.user("More!"));

    private static ChatTemplate template(Path folder, String source) throws IOException {
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"lstrip\": false}, "
                + "\"chat_template\": " + PythonJson.dumps(source) + "}");
        return ChatTemplate.load(folder, null);
    }

    /**
     * Each template with what Python renders for all four messages with the generation prompt, and for the first two
     * without it.
     */
    static Stream<Arguments> templates() {
        return Stream.of(
                Arguments.of("ChatML", CHATML,
                        "<s><|im_start|>system\nYou are a helpful bard.<|im_end|>\n<|im_start|>user\nSpeak of the sea.<|im_end|>\n<|im_start|>assistant\nThe sea is “deep” — 深い.<|im_end|>\n<|im_start|>user\nMore!<|im_end|>\n<|im_start|>assistant\n",
                        "<s><|im_start|>system\nYou are a helpful bard.<|im_end|>\n<|im_start|>user\nSpeak of the sea.<|im_end|>\n"),
                Arguments.of("Llama 2", LLAMA2,
                        "<s>[INST] <<SYS>>\n You are a helpful bard. \n<</SYS>>\n\nSpeak of the sea. [/INST] The sea is “deep” — 深い. </s><s>[INST] More! [/INST]",
                        "<s>[INST] <<SYS>>\n You are a helpful bard. \n<</SYS>>\n\nSpeak of the sea. [/INST]"),
                Arguments.of("Python methods, loop variables and tojson", FEATURES,
                        "[SYS 1/4] YOU ARE A HELPFUL BARD. |You are a helpful bard\n[USER] Speak of the ocean. 4 words\n[ASSISTANT] {\"role\": \"assistant\", \"content\": \"The sea is “deep” — 深い.\"}\n[USER last] More! 1 words\n{\n  \"role\": \"system\",\n  \"content\": \" You are a helpful bard. \"\n}<start>",
                        "[SYS 1/2] YOU ARE A HELPFUL BARD. |You are a helpful bard\n[USER last] Speak of the ocean. 4 words\n{\n  \"role\": \"system\",\n  \"content\": \" You are a helpful bard. \"\n}"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("templates")
    void rendersAsTransformersDoes(String name, String source, String conversation, String firstTwo, @TempDir Path folder) throws IOException {
        ChatTemplate template = template(folder, source);
        assertEquals(conversation, template.render(MESSAGES, true).text());
        assertEquals(firstTwo, template.render(MESSAGES.subList(0, 2), false).text());
    }

    @Test
    void chatMlWritesBosItselfAndRefusesAnUnknownRole(@TempDir Path folder) throws IOException {
        ChatTemplate template = template(folder, CHATML);
        assertFalse(template.render(MESSAGES, true).addSpecialTokens(), "the template writes BOS itself");
        InvalidRequestException error = assertThrows(InvalidRequestException.class,
                () -> template.render(List.of(new ChatMessage("narrator", "Once")), true));
        assertEquals("messages", error.field());
        assertTrue(error.getMessage().contains("Unknown role: narrator"), error.getMessage());
    }

    @Test
    void llama2RefusesRolesThatDoNotAlternate(@TempDir Path folder) throws IOException {
        ChatTemplate template = template(folder, LLAMA2);
        InvalidRequestException error = assertThrows(InvalidRequestException.class,
                () -> template.render(List.of(MESSAGES.get(1), MESSAGES.get(1)), true));
        assertTrue(error.getMessage().contains("Conversation roles must alternate user/assistant/user/assistant/..."), error.getMessage());
    }

    @Test
    void aListOfTemplatesUsesTheOneNamedDefault(@TempDir Path folder) throws IOException {
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"chat_template\": ["
                + "{\"name\": \"tool_use\", \"template\": \"TOOLS\"}, {\"name\": \"default\", \"template\": \"{{ messages[0].content }}!\"}]}");
        ChatTemplate template = ChatTemplate.load(folder, null);
        assertEquals("Hi!", template.render(List.of(ChatMessage.user("Hi")), true).text());
        assertTrue(template.origin().contains("\"default\""), template.origin());
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> ChatTemplate.load(folder, null));
        assertTrue(error.getMessage().contains("tool_use") && error.getMessage().contains("\"default\""), error.getMessage());
    }

    @Test
    void chatTemplateJinjaBesideTakesPrecedenceAndAnOverrideOverBoth(@TempDir Path folder) throws IOException {
        template(folder, CHATML);
        Files.writeString(folder.resolve("chat_template.jinja"), "jinja file: {{ messages | length }}");
        assertEquals("jinja file: 4", ChatTemplate.load(folder, null).render(MESSAGES, true).text());
        Path override = Files.writeString(folder.resolve("override.jinja"), "override: {{ messages[-1]['content'] }}");
        assertEquals("override: More!", ChatTemplate.load(folder, override).render(MESSAGES, true).text());
    }

    @Test
    void aModelWithoutATemplateJoinsTheContentsWithNewlinesAndAddsSpecialTokens() {
        ChatTemplate template = ChatTemplate.load(TestData.bundledModel("stories260K"), null);
        assertTrue(template.isPlain());
        ChatTemplate.Rendered rendered = template.render(MESSAGES, true);
        assertEquals(" You are a helpful bard. \nSpeak of the sea.\nThe sea is “deep” — 深い.\nMore!", rendered.text());
        assertTrue(rendered.addSpecialTokens(), "tokenized like a text prompt: the tokenizer adds BOS");
    }

    @Test
    void aBrokenTemplateIsAnErrorNamingWhereItCameFrom(@TempDir Path folder) throws IOException {
        ChatTemplate template = template(folder, "{% for message in messages %}{{ message['content'] }");
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> template.render(MESSAGES, true));
        assertTrue(error.getMessage().contains("tokenizer_config.json") && error.getMessage().contains("chat template failed"), error.getMessage());
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"chat_template\": 42}");
        error = assertThrows(BitDeltaException.class, () -> ChatTemplate.load(folder, null));
        assertTrue(error.getMessage().contains("chat_template must be a string"), error.getMessage());
    }
}
