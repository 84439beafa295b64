package org.bitdelta.cuda.internal;

import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * A cache keyed by the identity of its key objects, held weakly: an entry lives as long as its key object does,
 * never keyed by a memory address that a later object could reuse. Values of keys the garbage collector has taken
 * are handed to a release action at the next {@link #expunge} (device memory is freed by its owner, not by the GC).
 * Not thread-safe: the owner serializes access.
 */
public final class WeakIdentityCache<K, V> {
    private final Map<IdentityKey<K>, V> entries = new HashMap<>();
    private final ReferenceQueue<K> collected = new ReferenceQueue<>();

    /** A weak reference compared by the identity of its referent (equal only to itself once cleared). */
    private static final class IdentityKey<K> extends WeakReference<K> {
        private final int hash;

        IdentityKey(K key, ReferenceQueue<K> queue) {
            super(key, queue);
            this.hash = System.identityHashCode(key);
        }

        @Override
        public boolean equals(Object other) {
            if (this == other) {
                return true;
            }
            if (!(other instanceof IdentityKey<?> that) || hash != that.hash) {
                return false;
            }
            Object referent = get();
            return referent != null && referent == that.get();
        }

        @Override
        public int hashCode() {
            return hash;
        }
    }

    public V get(K key) {
        return entries.get(new IdentityKey<>(key, null));
    }

    public void put(K key, V value) {
        entries.put(new IdentityKey<>(key, collected), value);
    }

    /** Removes the entries whose keys were collected, handing each value to {@code release}. */
    @SuppressWarnings("unchecked")
    public void expunge(Consumer<V> release) {
        IdentityKey<K> key;
        while ((key = (IdentityKey<K>) collected.poll()) != null) {
            V value = entries.remove(key);
            if (value != null) {
                release.accept(value);
            }
        }
    }

    /** Every value, live or collected, and empties the cache. */
    public List<V> clear() {
        List<V> values = new ArrayList<>(entries.values());
        entries.clear();
        while (collected.poll() != null) {
            // the entries are gone already
        }
        return values;
    }

    public int size() {
        return entries.size();
    }
}
