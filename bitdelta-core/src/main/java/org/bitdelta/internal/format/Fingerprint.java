package org.bitdelta.internal.format;

import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The identity of a base model: SHA-256 over, for each tensor in name order, its name, dtype, shape and the
 * CRC32C of its bytes. A delta records its base's fingerprint; merge and load refuse any other base.
 */
public final class Fingerprint {
    private static final long CHUNK = 1L << 30;

    private Fingerprint() {
    }

    public static String of(ModelWeights weights) {
        List<String> names = weights.names().stream().sorted().toList();
        long[] checksums = new long[names.size()];
        // CRC32C runs near memory speed per core; tensors are independent, so use them all.
        java.util.stream.IntStream.range(0, names.size()).parallel()
                .forEach(i -> checksums[i] = crc32c(weights.tensor(names.get(i)).data()));
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
        for (int i = 0; i < names.size(); i++) {
            Tensor tensor = weights.tensor(names.get(i));
            String line = tensor.name() + "\t" + tensor.dtype().safetensorsName() + "\t" + Arrays.toString(tensor.shape())
                    + "\t" + Long.toHexString(checksums[i]) + "\n";
            digest.update(line.getBytes(StandardCharsets.UTF_8));
        }
        return "sha256:" + HexFormat.of().formatHex(digest.digest());
    }

    /**
     * Refuses a delta that was not compressed from the base whose fingerprint is {@code baseFingerprint}: the one
     * check (and the one message) of merge, tenant loading and distillation.
     *
     * @param deltaDescription what the user calls the delta (a file, a tenant name)
     * @param base             what the user calls the base (usually its folder)
     */
    public static void requireMadeFrom(String baseFingerprint, Object base, DeltaModel delta, String deltaDescription) {
        if (!baseFingerprint.equals(delta.baseFingerprint())) {
            throw new BitDeltaException(deltaDescription + " was not made from the base " + base + " (it was compressed against another base"
                    + " model): its base_fingerprint is " + delta.baseFingerprint() + " but that base's is " + baseFingerprint);
        }
    }

    static long crc32c(MemorySegment data) {
        CRC32C crc = new CRC32C();
        for (long offset = 0; offset < data.byteSize(); offset += CHUNK) {
            crc.update(data.asSlice(offset, Math.min(CHUNK, data.byteSize() - offset)).asByteBuffer());
        }
        return crc.getValue();
    }
}
