package org.bitdelta.internal.format;

/** Names of the .bitdelta file format (a safetensors file): tensor suffixes and metadata keys. */
public final class BitDeltaFormat {
    public static final String FORMAT = "bitdelta";
    public static final int VERSION = 1;

    public static final String SIGNS_SUFFIX = ".signs";
    public static final String SCALE_SUFFIX = ".scale";

    public static final String KEY_FORMAT = "format";
    public static final String KEY_FORMAT_VERSION = "format_version";
    public static final String KEY_LIBRARY_VERSION = "library_version";
    public static final String KEY_BASE_FINGERPRINT = "base_fingerprint";
    public static final String KEY_FINETUNED_NAME = "finetuned_name";
    public static final String KEY_FINETUNED_WEIGHT_BYTES = "finetuned_weight_bytes";
    public static final String KEY_SCALE_GRANULARITY = "scale_granularity";
    public static final String KEY_DISTILLED = "distilled";
    /** JSON object: matrix name → [rows, cols] (the sign tensor's shape loses cols modulo 8). */
    public static final String KEY_MATRIX_SHAPES = "matrix_shapes";
    /** JSON object: file name → {"base64": content} or {"same_as_base_sha256": hex}, the fine-tune's non-weight files. */
    public static final String KEY_MODEL_FILES = "model_files";

    public static final String PER_MATRIX = "per_matrix";
    public static final String PER_ROW = "per_row";

    private BitDeltaFormat() {
    }
}
