package org.bitdelta.internal.serving;

import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The Python methods that Hugging Face chat templates call on strings and dicts ({@code content.strip()},
 * {@code role.startswith('sys')}, {@code message.get('tool_calls')}, {@code ', '.join(names)}, ...), which
 * jinjava's bean resolver does not know (it calls Java methods: {@code strip()} exists in Java, {@code startswith}
 * does not). Placed before jinjava's resolvers; everything it does not know falls through to them.
 */
final class PythonMethods extends ELResolver {

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (base == null || method == null) {
            return null;
        }
        String name = method.toString();
        Object[] arguments = params == null ? new Object[0] : params;
        Object result;
        if (base instanceof String text) {
            result = string(text, name, arguments);
        } else if (base instanceof Map<?, ?> map) {
            result = dict(map, name, arguments);
        } else {
            return null;
        }
        if (result == NOT_HANDLED) {
            return null;
        }
        context.setPropertyResolved(true);
        return result;
    }

    private static final Object NOT_HANDLED = new Object();

    private static Object string(String text, String name, Object[] arguments) {
        return switch (name) {
            case "strip" -> strip(text, arguments, true, true);
            case "lstrip" -> strip(text, arguments, true, false);
            case "rstrip" -> strip(text, arguments, false, true);
            case "startswith" -> matchesAny(arguments, 0, prefix -> text.startsWith(prefix));
            case "endswith" -> matchesAny(arguments, 0, suffix -> text.endsWith(suffix));
            case "upper" -> text.toUpperCase(Locale.ROOT);
            case "lower" -> text.toLowerCase(Locale.ROOT);
            case "capitalize" -> text.isEmpty() ? text : text.substring(0, 1).toUpperCase(Locale.ROOT) + text.substring(1).toLowerCase(Locale.ROOT);
            case "title" -> title(text);
            case "split" -> split(text, arguments);
            case "replace" -> arguments.length >= 2 ? replace(text, str(arguments[0]), str(arguments[1]),
                    arguments.length > 2 ? ((Number) arguments[2]).intValue() : -1) : NOT_HANDLED;
            case "join" -> arguments.length == 1 ? join(text, arguments[0]) : NOT_HANDLED;
            case "find" -> arguments.length == 1 ? (long) text.indexOf(str(arguments[0])) : NOT_HANDLED;
            case "count" -> arguments.length == 1 ? count(text, str(arguments[0])) : NOT_HANDLED;
            case "isspace" -> !text.isEmpty() && text.isBlank();
            case "isdigit" -> !text.isEmpty() && text.chars().allMatch(Character::isDigit);
            default -> NOT_HANDLED;
        };
    }

    private static Object dict(Map<?, ?> map, String name, Object[] arguments) {
        return switch (name) {
            case "items" -> {
                List<List<Object>> items = new ArrayList<>();
                for (Map.Entry<?, ?> entry : map.entrySet()) {
                    items.add(List.of(entry.getKey(), entry.getValue()));
                }
                yield items;
            }
            case "keys" -> new ArrayList<>(map.keySet());
            case "values" -> new ArrayList<>(map.values());
            case "get" -> arguments.length == 1 ? map.get(arguments[0])
                    : arguments.length == 2 ? (map.containsKey(arguments[0]) ? map.get(arguments[0]) : arguments[1]) : NOT_HANDLED;
            default -> NOT_HANDLED;
        };
    }

    private static String str(Object value) {
        return value == null ? "None" : value.toString();
    }

    /** Python's str.strip / lstrip / rstrip: whitespace, or the characters of the argument. */
    private static String strip(String text, Object[] arguments, boolean left, boolean right) {
        String characters = arguments.length > 0 && arguments[0] != null ? arguments[0].toString() : null;
        int start = 0;
        int end = text.length();
        while (left && start < end && strippable(text.charAt(start), characters)) {
            start++;
        }
        while (right && end > start && strippable(text.charAt(end - 1), characters)) {
            end--;
        }
        return text.substring(start, end);
    }

    private static boolean strippable(char character, String characters) {
        return characters == null ? Character.isWhitespace(character) || Character.isSpaceChar(character) : characters.indexOf(character) >= 0;
    }

    private interface Test {
        boolean test(String value);
    }

    /** startswith / endswith take a string or a tuple of strings. */
    private static Object matchesAny(Object[] arguments, int index, Test test) {
        if (arguments.length <= index) {
            return NOT_HANDLED;
        }
        Object argument = arguments[index];
        if (argument instanceof Collection<?> options) {
            for (Object option : options) {
                if (test.test(str(option))) {
                    return true;
                }
            }
            return false;
        }
        return test.test(str(argument));
    }

    private static String title(String text) {
        StringBuilder result = new StringBuilder(text.length());
        boolean previousLetter = false;
        for (int i = 0; i < text.length(); i++) {
            char character = text.charAt(i);
            result.append(previousLetter ? Character.toLowerCase(character) : Character.toUpperCase(character));
            previousLetter = Character.isLetter(character);
        }
        return result.toString();
    }

    /** Python's str.split: on runs of whitespace without a separator, else on the separator; maxsplit honoured. */
    private static List<String> split(String text, Object[] arguments) {
        String separator = arguments.length > 0 && arguments[0] != null ? arguments[0].toString() : null;
        int maxSplit = arguments.length > 1 ? ((Number) arguments[1]).intValue() : -1;
        List<String> parts = new ArrayList<>();
        if (separator == null) {
            int i = 0;
            int n = text.length();
            while (true) {
                while (i < n && Character.isWhitespace(text.charAt(i))) {
                    i++;
                }
                if (i >= n) {
                    break;
                }
                if (maxSplit >= 0 && parts.size() == maxSplit) {
                    parts.add(text.substring(i).stripTrailing());
                    break;
                }
                int start = i;
                while (i < n && !Character.isWhitespace(text.charAt(i))) {
                    i++;
                }
                parts.add(text.substring(start, i));
            }
            return parts;
        }
        int start = 0;
        while (maxSplit < 0 || parts.size() < maxSplit) {
            int at = text.indexOf(separator, start);
            if (at < 0) {
                break;
            }
            parts.add(text.substring(start, at));
            start = at + separator.length();
        }
        parts.add(text.substring(start));
        return parts;
    }

    private static String replace(String text, String old, String replacement, int count) {
        if (count < 0) {
            return text.replace(old, replacement);
        }
        StringBuilder result = new StringBuilder();
        int start = 0;
        for (int done = 0; done < count; done++) {
            int at = text.indexOf(old, start);
            if (at < 0) {
                break;
            }
            result.append(text, start, at).append(replacement);
            start = at + old.length();
        }
        return result.append(text.substring(start)).toString();
    }

    private static Object join(String separator, Object iterable) {
        if (!(iterable instanceof Iterable<?> values)) {
            return NOT_HANDLED;
        }
        StringBuilder result = new StringBuilder();
        Iterator<?> iterator = values.iterator();
        while (iterator.hasNext()) {
            result.append(str(iterator.next()));
            if (iterator.hasNext()) {
                result.append(separator);
            }
        }
        return result.toString();
    }

    private static long count(String text, String part) {
        if (part.isEmpty()) {
            return text.length() + 1;
        }
        long count = 0;
        for (int at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + part.length())) {
            count++;
        }
        return count;
    }

    // Property access is left to jinjava's resolvers.

    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {
    }

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return null;
    }
}
