package org.bitdelta.internal.serving;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import jinjava.javax.el.CompositeELResolver;
import org.bitdelta.BitDeltaException;
import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.InvalidRequestException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Turns chat messages into prompt text: the model's Jinja chat template rendered as transformers renders it
 * ({@code apply_chat_template}: trim_blocks and lstrip_blocks on; {@code messages}, {@code add_generation_prompt},
 * the special tokens of tokenizer_config.json, {@code raise_exception} and {@code strftime_now}; Python's
 * {@code tojson} and string and dict methods), or, for a model without a template, the plain format: the
 * messages' contents joined by "\n", roles left out. The template's text is tokenized without adding special
 * tokens (the template writes BOS itself, as transformers assumes); the plain format's with them, like any text
 * prompt.
 */
final class ChatTemplate {
    private static final Logger LOG = LoggerFactory.getLogger(ChatTemplate.class);
    /** The separator of the plain format. */
    static final String PLAIN_SEPARATOR = "\n";

    private final String source;
    private final String origin;
    private final Map<String, String> specialTokens;
    private final Jinjava jinjava;
    private final String modelFolder;
    private final AtomicBoolean warned = new AtomicBoolean();

    /** The prompt text and whether the tokenizer should add its special tokens to it. */
    record Rendered(String text, boolean addSpecialTokens) {
    }

    private ChatTemplate(String source, String origin, Map<String, String> specialTokens, String modelFolder) {
        this.source = source;
        this.origin = origin;
        this.specialTokens = Map.copyOf(specialTokens);
        this.modelFolder = modelFolder;
        this.jinjava = source == null ? null : newJinjava();
    }

    /**
     * The template of {@code override} when given, else the model folder's (chat_template.jinja, then
     * tokenizer_config.json), else the plain format.
     */
    static ChatTemplate load(Path folder, Path override) {
        Map<String, String> specialTokens = ModelFiles.specialTokens(folder);
        if (override != null) {
            if (!Files.isRegularFile(override)) {
                throw new BitDeltaException(override + ": no such chat template file (EngineOptions.chatTemplate)");
            }
            return new ChatTemplate(ModelFiles.readString(override), override.toString(), specialTokens, folder.toString());
        }
        ModelFiles.TemplateSource template = ModelFiles.chatTemplate(folder);
        return template == null ? new ChatTemplate(null, null, specialTokens, folder.toString())
                : new ChatTemplate(template.text(), template.origin(), specialTokens, folder.toString());
    }

    /** Whether this is the plain format (the model has no template). */
    boolean isPlain() {
        return source == null;
    }

    /** Where the template came from, or null for the plain format. */
    String origin() {
        return origin;
    }

    private static Jinjava newJinjava() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonMethods());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                // Jinja's whitespace control and operator precedence; but tags like "{%- if" must parse, which
                // whitespaceRequiredWithinTokens refuses.
                .withLegacyOverrides(LegacyOverrides.Builder.from(LegacyOverrides.ALL).withWhitespaceRequiredWithinTokens(false).build())
                .withElResolver(resolver)
                .build();
        Jinjava jinjava = new Jinjava(config);
        jinjava.registerFilter(new PythonJson());
        jinjava.registerFunction(new ELFunctionDefinition("", "raise_exception", TemplateFunctions.class, "raiseException", String.class));
        jinjava.registerFunction(new ELFunctionDefinition("", "strftime_now", TemplateFunctions.class, "strftimeNow", String.class));
        return jinjava;
    }

    /**
     * Renders {@code messages} with the generation prompt added (where the template has one).
     *
     * @throws InvalidRequestException where the template refuses the messages (its raise_exception)
     * @throws BitDeltaException       where the template itself fails, naming where it came from
     */
    Rendered render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        if (source == null) {
            if (warned.compareAndSet(false, true)) {
                LOG.warn("{} has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json): chat messages are "
                        + "rendered in the plain format, their contents joined by newlines (EngineOptions.chatTemplate sets one)", modelFolder);
            }
            List<String> contents = new ArrayList<>();
            for (ChatMessage message : messages) {
                contents.add(message.content());
            }
            return new Rendered(String.join(PLAIN_SEPARATOR, contents), true);
        }
        Map<String, Object> context = new LinkedHashMap<>(specialTokens);
        List<Map<String, Object>> list = new ArrayList<>();
        for (ChatMessage message : messages) {
            Map<String, Object> entry = new LinkedHashMap<>();
            entry.put("role", message.role());
            entry.put("content", message.content());
            list.add(entry);
        }
        context.put("messages", list);
        context.put("add_generation_prompt", addGenerationPrompt);
        RenderResult result;
        TemplateFunctions.RAISED.remove();
        try {
            result = jinjava.renderForResult(source, context);
        } catch (RuntimeException e) {
            throw refusal().orElseThrow(() -> new BitDeltaException(origin + ": the chat template failed: " + e.getMessage(), e));
        }
        Optional<InvalidRequestException> refused = refusal();
        if (refused.isPresent()) {
            throw refused.get();
        }
        List<String> fatal = new ArrayList<>();
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                fatal.add("line " + error.getLineno() + ": " + error.getMessage());
            }
        }
        if (!fatal.isEmpty()) {
            throw new BitDeltaException(origin + ": the chat template failed: " + String.join("; ", fatal));
        }
        return new Rendered(result.getOutput(), false);
    }

    /** The template's raise_exception during this thread's last render, if it called it (cleared here). */
    private static Optional<InvalidRequestException> refusal() {
        String raised = TemplateFunctions.RAISED.get();
        TemplateFunctions.RAISED.remove();
        return raised == null ? Optional.empty()
                : Optional.of(new InvalidRequestException("messages", "the chat template refused the messages: " + raised));
    }
}
