package org.bitdelta.internal.serving;

import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.inference.Tokenizer;
import org.bitdelta.internal.format.BitDeltaFormat;
import org.bitdelta.internal.format.Fingerprint;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.DecoderOptions;
import org.bitdelta.internal.model.ModelLoader;
import org.bitdelta.internal.model.TenantTable;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.EngineBusyException;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.EngineStats;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.serving.Piece;
import org.bitdelta.serving.Request;
import org.bitdelta.serving.Timings;
import org.bitdelta.serving.Usage;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The engine behind {@link org.bitdelta.serving.Engine}: one thread that runs steps. Each turn of its loop takes
 * the requests submitted since the last turn, ends the cancelled ones, asks the {@link Scheduler} for a step, runs
 * it through the {@link ModelRunner}, and turns each sampled token into a piece: {@link Detokenizer} for the text,
 * {@link StopStrings} and the request's limits for the end. Submission, tenant changes and statistics come from
 * other threads; requests reach the loop through an inbox, tenants through the decoder (which lets a step and a
 * tenant change take turns).
 *
 * <p>Failures: a request whose tenant was removed, or does not fit the device budget, ends with an error alone.
 * A step that throws ends every running request with an error and the engine goes on. Anything else the loop
 * cannot handle (an Error) ends every request and stops the engine, which then refuses new work.
 */
public final class EngineCore implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(EngineCore.class);
    private static final AtomicInteger ENGINE_NUMBER = new AtomicInteger();

    private final Path folder;
    private final EngineOptions options;
    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final String baseAlias;
    private final InputProcessor inputs;
    private final Scheduler scheduler;
    private final ModelRunner runner;
    private final Thread thread;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition wake = lock.newCondition();
    private final ArrayDeque<RequestState> inbox = new ArrayDeque<>();
    private boolean wakeRequested;
    private volatile boolean closing;
    private volatile Throwable fatal;

    /** Submitted requests not yet admitted for the first time (what maxWaiting bounds). */
    private final AtomicInteger waitingNew = new AtomicInteger();
    private final AtomicInteger waitingPreempted = new AtomicInteger();
    private final AtomicInteger running = new AtomicInteger();
    private final AtomicLong requestIds = new AtomicLong();
    private final AtomicLong submitted = new AtomicLong();
    private final AtomicLong steps = new AtomicLong();
    private final AtomicLong preemptions = new AtomicLong();
    private final AtomicLong promptTokens = new AtomicLong();
    private final AtomicLong generatedTokens = new AtomicLong();
    private final AtomicLongArray finished = new AtomicLongArray(FinishReason.values().length);
    private volatile int lastStepRows;
    private volatile int lastStepSequences;
    /** Per tenant (the decoder's name): [running, waiting]. */
    private final Map<String, AtomicInteger[]> tenantCounts = new ConcurrentHashMap<>();
    /** Deltas the engine loaded from files, closed when their tenant goes. */
    private final Map<String, DeltaModel> ownedDeltas = new ConcurrentHashMap<>();
    private final Object fingerprintLock = new Object();
    private String fingerprint;

    private EngineCore(Path folder, EngineOptions options, Decoder decoder, Tokenizer tokenizer, ChatTemplate template) {
        this.folder = folder;
        this.options = options;
        this.decoder = decoder;
        this.tokenizer = tokenizer;
        String alias = options.baseAliasFor(folder);
        this.baseAlias = alias == null || alias.equals(TenantTable.BASE) ? null : alias;
        int[] endTokens = ModelFiles.eosTokenIds(folder, decoder.config().eosTokenIds());
        this.inputs = new InputProcessor(decoder, tokenizer, template, baseAlias, endTokens, folder.toString());
        this.runner = new ModelRunner(decoder);
        this.scheduler = new Scheduler(decoder, options.maxRunning(), options.maxRowsPerStep(), options.prefillChunkTokens(), new SchedulerEvents());
        this.thread = new Thread(this::loop, "bitdelta-engine-" + ENGINE_NUMBER.incrementAndGet());
        this.thread.setDaemon(true);
    }

    /** Opens the model folder (weights, tokenizer, chat template) and starts the engine thread. */
    public static EngineCore open(Path folder, EngineOptions options) {
        if (options.maxRunning() > options.maxRowsPerStep()) {
            throw new IllegalArgumentException("maxRunning (" + options.maxRunning() + ") must not exceed maxRowsPerStep ("
                    + options.maxRowsPerStep() + "): every running request needs a row per step");
        }
        int context = ModelLoader.config(folder).contextLength();
        DecoderOptions decoderOptions = DecoderOptions.defaults(context)
                .withMaxRows(options.maxRowsPerStep())
                .withKvBlockSize(options.kvBlockSize())
                .withTenantSlots(options.tenantSlots() + 1)
                .withTenantBudgetBytes(options.tenantBudgetBytes());
        if (options.kvCacheTokens() > 0) {
            decoderOptions = decoderOptions.withKvCacheTokens(options.kvCacheTokens());
        }
        boolean ownsBackend = options.backend() == null;
        TensorBackend backend = ownsBackend ? TensorBackends.create(options.backendName()) : options.backend();
        Decoder decoder = null;
        Tokenizer tokenizer = null;
        try {
            decoder = Decoder.load(folder, backend, ownsBackend, decoderOptions);
            tokenizer = Files.isRegularFile(folder.resolve("tokenizer.json")) ? Tokenizer.load(folder) : null;
            ChatTemplate template = ChatTemplate.load(folder, options.chatTemplate());
            EngineCore core = new EngineCore(folder, options, decoder, tokenizer, template);
            core.thread.start();
            return core;
        } catch (RuntimeException | Error e) {
            if (tokenizer != null) {
                tokenizer.close();
            }
            if (decoder != null) {
                decoder.close();
            } else if (ownsBackend) {
                backend.close();
            }
            throw e;
        }
    }

    // ---------------------------------------------------------------- model and tenants

    public Path folder() {
        return folder;
    }

    public int contextLength() {
        return decoder.config().contextLength();
    }

    public String baseAlias() {
        return baseAlias;
    }

    public List<String> tenants() {
        return inputs.tenantNames();
    }

    /**
     * Adds a tenant; the engine closes {@code delta} when the tenant goes if it {@code owns} it. Everything is
     * checked (name, base fingerprint, shapes) before anything changes.
     */
    public void addTenant(String name, DeltaModel delta, boolean owns) {
        ensureOpen();
        if (name == null || name.isBlank()) {
            throw new BitDeltaException("a tenant needs a non-blank name");
        }
        if (name.equals(baseAlias)) {
            throw new BitDeltaException("'" + name + "' names the base model (its alias, EngineOptions.baseAlias) and cannot be a tenant's name");
        }
        String source = "delta '" + name + "' (" + delta.metadata().getOrDefault(BitDeltaFormat.KEY_FINETUNED_NAME, "unnamed fine-tune") + ")";
        Fingerprint.requireMadeFrom(baseFingerprint(), folder, delta, source);
        decoder.addTenant(name, source, delta);
        if (owns) {
            ownedDeltas.put(name, delta);
        }
    }

    /** Removes a tenant: its running requests end with an error at the next step; waiting ones when they would join. */
    public void removeTenant(String name) {
        ensureOpen();
        String tenant = inputs.resolve(name);
        if (tenant.equals(TenantTable.BASE)) {
            throw new BitDeltaException("'" + name + "' is the base model, which cannot be removed");
        }
        decoder.removeTenant(tenant);
        DeltaModel owned = ownedDeltas.remove(tenant);
        if (owned != null) {
            owned.close();
        }
    }

    private String baseFingerprint() {
        synchronized (fingerprintLock) {
            if (fingerprint == null) {
                fingerprint = Fingerprint.of(decoder.weights());
            }
            return fingerprint;
        }
    }

    // ---------------------------------------------------------------- requests

    /** Checks and tokenizes the request on the calling thread, then queues it for the engine thread. */
    public CompletionStream submit(Request request) {
        ensureOpen();
        long submittedNanos = System.nanoTime();
        Instant submittedAt = Instant.now();
        PreparedRequest prepared = inputs.prepare(request);
        int limit = options.maxWaiting();
        if (waitingNew.getAndUpdate(count -> count < limit ? count + 1 : count) >= limit) {
            throw new EngineBusyException("the engine is busy: " + limit + " requests are waiting already (EngineOptions.maxWaiting); "
                    + "retry later");
        }
        CompletionStream stream = new CompletionStream(requestIds.incrementAndGet(), request, prepared.prompt().length, this::requestWake);
        RequestState state = new RequestState(stream, prepared, request.tenant(), tokenizer, submittedNanos, submittedAt);
        lock.lock();
        try {
            if (closing) {
                waitingNew.decrementAndGet();
                throw closedException();
            }
            counts(prepared.tenant())[1].incrementAndGet();
            submitted.incrementAndGet();
            inbox.addLast(state);
            wake.signal();
        } finally {
            lock.unlock();
        }
        return stream;
    }

    private AtomicInteger[] counts(String tenant) {
        return tenantCounts.computeIfAbsent(tenant, name -> new AtomicInteger[]{new AtomicInteger(), new AtomicInteger()});
    }

    private void requestWake() {
        signalAfter(() -> wakeRequested = true);
    }

    /** Makes {@code change} under the lock and wakes the engine thread, which waits for such changes under it. */
    private void signalAfter(Runnable change) {
        lock.lock();
        try {
            change.run();
            wake.signal();
        } finally {
            lock.unlock();
        }
    }

    private void ensureOpen() {
        if (closing) {
            throw closedException();
        }
    }

    private BitDeltaException closedException() {
        Throwable cause = fatal;
        return cause == null ? new BitDeltaException("the engine is closed")
                : new BitDeltaException("the engine stopped after an internal error: " + cause, cause);
    }

    // ---------------------------------------------------------------- the engine thread

    private void loop() {
        try {
            while (true) {
                List<RequestState> arrivals = new ArrayList<>();
                boolean stop;
                lock.lock();
                try {
                    while (!closing && inbox.isEmpty() && !wakeRequested && !scheduler.hasWork()) {
                        wake.await();
                    }
                    arrivals.addAll(inbox);
                    inbox.clear();
                    wakeRequested = false;
                    stop = closing;
                } finally {
                    lock.unlock();
                }
                arrivals.forEach(scheduler::addWaiting);
                if (stop) {
                    endAll(FinishReason.CANCELLED, "the engine was closed");
                    return;
                }
                for (RequestState state : scheduler.all()) {
                    if (state.cancelRequested()) {
                        finish(state, FinishReason.CANCELLED, "cancelled", null, -1, "");
                    }
                }
                ScheduledStep step = scheduler.schedule();
                if (step.isEmpty()) {
                    if (scheduler.hasWork()) {
                        // Nothing could run (no KV blocks free, say): wait for a change rather than spin.
                        lock.lock();
                        try {
                            if (inbox.isEmpty() && !wakeRequested && !closing) {
                                wake.await(10, TimeUnit.MILLISECONDS);
                            }
                        } finally {
                            lock.unlock();
                        }
                    }
                    continue;
                }
                Decoder.StepResult result;
                try {
                    result = runner.run(step);
                } catch (RuntimeException e) {
                    LOG.error("an engine step failed; its {} requests end with an error", step.entries().size(), e);
                    for (RequestState state : new ArrayList<>(scheduler.running())) {
                        finish(state, FinishReason.ERROR, "the decoder step failed: " + e, null, -1, "");
                    }
                    continue;
                }
                long now = System.nanoTime();
                steps.incrementAndGet();
                lastStepRows = step.rows();
                lastStepSequences = step.entries().size();
                for (int i = 0; i < step.entries().size(); i++) {
                    ScheduledStep.Entry entry = step.entries().get(i);
                    BitDeltaException failure = result.failures().get(i);
                    if (failure != null) {
                        finish(entry.state(), FinishReason.ERROR, failure.getMessage(), null, -1, "");
                    } else if (entry.sample()) {
                        accept(entry.state(), result.tokens()[i], now);
                    }
                }
            }
        } catch (Throwable t) {
            fatal = t;
            closing = true;
            LOG.error("the engine thread stopped after an internal error; every request ends with an error", t);
            endAll(FinishReason.ERROR, "the engine stopped after an internal error: " + t);
        }
    }

    /** A sampled token: append it, release its text, and end the request where a stop condition holds. */
    private void accept(RequestState state, int token, long now) {
        try {
            state.append(token, now);
            generatedTokens.incrementAndGet();
            PreparedRequest request = state.request;
            if (contains(request.endTokens(), token)) {
                finish(state, FinishReason.STOP, "eos token " + token, null, token, flushText(state));
                return;
            }
            if (contains(request.stopTokens(), token)) {
                finish(state, FinishReason.STOP, "stop token " + token, null, token, flushText(state));
                return;
            }
            String text = state.stopStrings.add(state.detokenizer.add(token));
            if (state.stopStrings.matched() != null) {
                finish(state, FinishReason.STOP, "stop string " + quote(state.stopStrings.matched()), state.stopStrings.matched(), -1, text,
                        token);
                return;
            }
            if (state.generated() == request.maxTokens()) {
                String detail = request.clamped() ? "context length " + decoder.config().contextLength() : "max_tokens " + request.maxTokens();
                finish(state, FinishReason.LENGTH, detail, null, -1, text + flushText(state), token);
                return;
            }
            state.text.append(text);
            state.stream.publish(new Piece(text, new int[]{token}, now, null));
        } catch (RuntimeException e) {
            LOG.warn("request {} failed on token {}", state.stream.id(), token, e);
            finish(state, FinishReason.ERROR, "processing token " + token + " failed: " + e, null, -1, "");
        }
    }

    /** The text still held back (unfinished characters, a possible stop string's start), for a completion that ends. */
    private static String flushText(RequestState state) {
        String text = state.stopStrings.add(state.detokenizer.flush());
        return state.stopStrings.matched() != null ? text : text + state.stopStrings.flush();
    }

    private void finish(RequestState state, FinishReason reason, String detail, String stopString, int stopToken, String text) {
        int last = reason == FinishReason.STOP && stopToken >= 0 ? stopToken : -1;
        finish(state, reason, detail, stopString, stopToken, text, last);
    }

    /**
     * Ends a request: out of the scheduler, its blocks freed, its last piece (with {@code text} and the token
     * {@code lastToken}, if ≥ 0) published with the result.
     */
    private void finish(RequestState state, FinishReason reason, String detail, String stopString, int stopToken, String text,
                        int lastToken) {
        if (state.finished) {
            return; // ended already (a failure while ending it): one last piece only
        }
        state.finished = true;
        boolean wasRunning = scheduler.remove(state);
        state.releaseSequence();
        AtomicInteger[] counts = counts(state.request.tenant());
        if (wasRunning) {
            running.decrementAndGet();
            counts[0].decrementAndGet();
        } else {
            counts[1].decrementAndGet();
            (state.admittedBefore ? waitingPreempted : waitingNew).decrementAndGet();
        }
        finished.incrementAndGet(reason.ordinal());
        state.text.append(text);
        long now = System.nanoTime();
        int[] tokens = state.generatedTokens();
        Timings timings = new Timings(state.submittedAt, state.submittedNanos, state.scheduledNanos, state.tokenNanos(), now);
        CompletionResult result = new CompletionResult(state.requestedTenant, state.text.toString(), tokens, reason, detail, stopString,
                stopToken, new Usage(state.promptLength(), tokens.length), timings);
        state.stream.publish(new Piece(text, lastToken >= 0 ? new int[]{lastToken} : new int[0], now, result));
    }

    /** Ends every request, waiting or running, and those still in the inbox. */
    private void endAll(FinishReason reason, String detail) {
        lock.lock();
        try {
            inbox.forEach(scheduler::addWaiting);
            inbox.clear();
        } finally {
            lock.unlock();
        }
        for (RequestState state : scheduler.all()) {
            try {
                finish(state, reason, detail, null, -1, "");
            } catch (RuntimeException e) {
                LOG.error("ending request {} failed", state.stream.id(), e);
            }
        }
    }

    private static boolean contains(int[] values, int value) {
        for (int candidate : values) {
            if (candidate == value) {
                return true;
            }
        }
        return false;
    }

    private static String quote(String text) {
        return '"' + text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n").replace("\t", "\\t") + '"';
    }

    /** Keeps the counters in step with the scheduler's moves. */
    private final class SchedulerEvents implements Scheduler.Events {
        @Override
        public void admitted(RequestState state) {
            move(state, true);
            if (state.admittedBefore) {
                waitingPreempted.decrementAndGet();
            } else {
                waitingNew.decrementAndGet();
                promptTokens.addAndGet(state.promptLength());
                state.admittedBefore = true;
                state.scheduledNanos = System.nanoTime();
            }
        }

        @Override
        public void preempted(RequestState state) {
            move(state, false);
            waitingPreempted.incrementAndGet();
            preemptions.incrementAndGet();
        }

        @Override
        public void admissionFailed(RequestState state, RuntimeException error) {
            // Not in the scheduler any more: finish counts it as waiting.
            finish(state, FinishReason.ERROR, error.getMessage(), null, -1, "");
        }

        /** Moves the request from its tenant's waiting count to its running count ({@code toRunning}), or back. */
        private void move(RequestState state, boolean toRunning) {
            AtomicInteger[] counts = counts(state.request.tenant());
            counts[toRunning ? 1 : 0].decrementAndGet();
            counts[toRunning ? 0 : 1].incrementAndGet();
            running.addAndGet(toRunning ? 1 : -1);
        }
    }

    // ---------------------------------------------------------------- statistics and shutdown

    public EngineStats stats() {
        int[] blockUse = decoder.kvBlockUse();
        List<EngineStats.TenantStats> tenantStats = new ArrayList<>();
        AtomicInteger[] base = counts(TenantTable.BASE);
        tenantStats.add(new EngineStats.TenantStats(TenantTable.BASE, 0, 0, true, base[0].get(), base[1].get()));
        for (Decoder.TenantMemory tenant : decoder.tenantMemory()) {
            AtomicInteger[] counts = counts(tenant.name());
            tenantStats.add(new EngineStats.TenantStats(tenant.name(), tenant.bytes(), tenant.deviceBytes(), tenant.slot() >= 0,
                    counts[0].get(), counts[1].get()));
        }
        Map<FinishReason, Long> byReason = new EnumMap<>(FinishReason.class);
        for (FinishReason reason : FinishReason.values()) {
            byReason.put(reason, finished.get(reason.ordinal()));
        }
        return new EngineStats(running.get(), waitingNew.get() + waitingPreempted.get(), options.maxRunning(), options.maxWaiting(),
                lastStepSequences, lastStepRows, steps.get(), blockUse[0], blockUse[1], decoder.spec().kvBlockSize(), preemptions.get(),
                submitted.get(), byReason, promptTokens.get(), generatedTokens.get(), tenantStats, closing ? null : decoder.memory(), closing);
    }

    /** Ends every request (cancelled), stops the thread, frees the model. */
    @Override
    public void close() {
        signalAfter(() -> closing = true);
        if (Thread.currentThread() != thread) {
            boolean interrupted = false;
            while (thread.isAlive()) {
                try {
                    thread.join();
                } catch (InterruptedException e) {
                    interrupted = true; // finish closing first: the model must not be freed under a running step
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (fingerprintLock) {
            try {
                decoder.close();
            } finally {
                if (tokenizer != null) {
                    tokenizer.close();
                }
                for (DeltaModel delta : ownedDeltas.values()) {
                    delta.close();
                }
                ownedDeltas.clear();
            }
        }
    }
}
