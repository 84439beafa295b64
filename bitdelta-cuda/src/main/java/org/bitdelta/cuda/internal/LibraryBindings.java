package org.bitdelta.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * What {@link CudaLibrary} and {@link StepLibrary} share in binding libbitdelta_cuda.so: a function's downcall
 * handle, a downcall whose declared {@code Throwable} is made unchecked, out-parameters, C strings, and the check of a
 * BD_* status (each library words its own {@link #failure}).
 */
abstract sealed class LibraryBindings permits CudaLibrary, StepLibrary {
    private final Path path;
    private final Linker linker = Linker.nativeLinker();
    private final SymbolLookup lookup;

    LibraryBindings(Path path) {
        this.path = path;
        this.lookup = SymbolLookup.libraryLookup(path, Arena.global());
    }

    public Path path() {
        return path;
    }

    /** The downcall handle of the library's function {@code name}; throws where the library lacks it. */
    final MethodHandle bind(String name, FunctionDescriptor descriptor, Linker.Option... options) {
        MemorySegment symbol = lookup.find(name).orElseThrow(() -> new CudaException(path + " lacks the symbol " + name
                + " (a library older than these bindings?)", -1));
        return linker.downcallHandle(symbol, descriptor, options);
    }

    /** {@link #bind} for a function that does no CUDA work: "critical" skips the thread-state transition. */
    final MethodHandle bindCritical(String name, FunctionDescriptor descriptor) {
        return bind(name, descriptor, Linker.Option.critical(false));
    }

    /** Throws unless the library's {@code what} (an ABI version) is {@code expected}, the one these bindings follow. */
    final void requireVersion(String what, int version, int expected) {
        if (version != expected) {
            throw new CudaException(path + " has " + what + " " + version + ", these bindings expect " + expected, -1);
        }
    }

    // ---- status ----

    /** Throws {@link #failure} where {@code status} is not BD_OK. */
    public void check(int status, String what) {
        if (status != CudaLibrary.OK) {
            throw failure(status, what);
        }
    }

    /** The exception for {@code what} having failed with {@code status}, with the library's account of it. */
    public abstract CudaException failure(int status, String what);

    // ---- calls ----

    /** A downcall returning an {@code int}. */
    @FunctionalInterface
    interface IntCall {
        int call() throws Throwable;
    }

    /** A downcall returning a {@code long} ({@code size_t}). */
    @FunctionalInterface
    interface LongCall {
        long call() throws Throwable;
    }

    /** A downcall returning a C string (static storage of the library) or NULL. */
    @FunctionalInterface
    interface StringCall {
        MemorySegment call() throws Throwable;
    }

    /** A downcall that writes its result to {@code out}, read once it returned. */
    @FunctionalInterface
    interface OutCall<T> {
        T call(MemorySegment out) throws Throwable;
    }

    /** A downcall returning a BD_* status that writes a pointer to {@code out}. */
    @FunctionalInterface
    interface PointerCall {
        int call(MemorySegment out) throws Throwable;
    }

    /** Runs {@code call}, the downcall of {@code function}. */
    static int call(String function, IntCall call) {
        try {
            return call.call();
        } catch (Throwable e) {
            throw rethrow(function, e);
        }
    }

    /** Runs {@code call}, the downcall of {@code function}. */
    static long callLong(String function, LongCall call) {
        try {
            return call.call();
        } catch (Throwable e) {
            throw rethrow(function, e);
        }
    }

    /** Runs {@code call}, the downcall of {@code function}; the text of the C string it returns, "" for NULL. */
    static String callForString(String function, StringCall call) {
        try {
            MemorySegment text = call.call();
            return text.equals(MemorySegment.NULL) ? "" : text.reinterpret(4096).getString(0);
        } catch (Throwable e) {
            throw rethrow(function, e);
        }
    }

    /** Runs {@code call}, the downcall of {@code function}, with a zeroed out-parameter of {@code layout} for its duration. */
    static <T> T callWithOut(String function, MemoryLayout layout, OutCall<T> call) {
        try (Arena arena = Arena.ofConfined()) {
            return call.call(arena.allocate(layout));
        } catch (Throwable e) {
            throw rethrow(function, e);
        }
    }

    /**
     * Runs {@code call}, the downcall of {@code function}, with a pointer-sized out-parameter; checks the status it
     * returns ({@link #check}, naming {@code what}) and returns the pointer it wrote.
     */
    final long callForPointer(String function, String what, PointerCall call) {
        return callWithOut(function, ADDRESS, out -> {
            check(call.call(out), what);
            return out.get(JAVA_LONG, 0);
        });
    }

    /** invokeExact declares Throwable; a downcall throws only on a wrong call site, which is a bug here. */
    private static RuntimeException rethrow(String function, Throwable e) {
        if (e instanceof RuntimeException runtime) {
            return runtime;
        }
        if (e instanceof Error error) {
            throw error;
        }
        return new CudaException("calling " + function + " failed", e);
    }
}
