package org.bitdelta.internal.serving;

import java.time.LocalDateTime;
import java.time.format.TextStyle;
import java.util.Locale;

/**
 * The global functions transformers gives chat templates, called by jinjava through reflection (so this class
 * and its methods are public, and the package is exported to jinjava alone).
 */
public final class TemplateFunctions {
    private TemplateFunctions() {
    }

    /** Thrown by {@code raise_exception(message)}: the template refuses the messages. */
    static final class TemplateRaisedException extends RuntimeException {
        TemplateRaisedException(String message) {
            super(message);
        }
    }

    /** The message of the last {@code raise_exception} on this thread's render, read and cleared by ChatTemplate. */
    static final ThreadLocal<String> RAISED = new ThreadLocal<>();

    /** {@code raise_exception(message)}: ends the render with the template's message. */
    public static Object raiseException(String message) {
        RAISED.set(message);
        throw new TemplateRaisedException(message);
    }

    /** {@code strftime_now(format)}: the local date and time in a Python strftime format (the common directives). */
    public static String strftimeNow(String format) {
        LocalDateTime now = LocalDateTime.now();
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char character = format.charAt(i);
            if (character != '%' || i + 1 == format.length()) {
                out.append(character);
                continue;
            }
            char directive = format.charAt(++i);
            switch (directive) {
                case 'd' -> out.append(String.format(Locale.ROOT, "%02d", now.getDayOfMonth()));
                case 'm' -> out.append(String.format(Locale.ROOT, "%02d", now.getMonthValue()));
                case 'Y' -> out.append(now.getYear());
                case 'y' -> out.append(String.format(Locale.ROOT, "%02d", now.getYear() % 100));
                case 'H' -> out.append(String.format(Locale.ROOT, "%02d", now.getHour()));
                case 'M' -> out.append(String.format(Locale.ROOT, "%02d", now.getMinute()));
                case 'S' -> out.append(String.format(Locale.ROOT, "%02d", now.getSecond()));
                case 'b' -> out.append(now.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> out.append(now.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> out.append(now.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> out.append(now.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'j' -> out.append(String.format(Locale.ROOT, "%03d", now.getDayOfYear()));
                case '%' -> out.append('%');
                default -> out.append('%').append(directive);
            }
        }
        return out.toString();
    }
}
