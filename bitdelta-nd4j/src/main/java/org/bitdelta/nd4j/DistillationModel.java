package org.bitdelta.nd4j;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.format.Fingerprint;
import org.bitdelta.internal.model.ModelConfig;
import org.bitdelta.spi.Projection;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.tensor.Tensor;
import org.nd4j.autodiff.samediff.api.OutAndGrad;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;

/**
 * The teacher (the fine-tune) and the student (base + signs · scales) of one distillation, as two SameDiff graphs
 * for a fixed batch shape, after every check that the three inputs belong together. Package-private: the
 * distiller's loop and the tests (gradient checks, golden logits) drive it.
 */
final class DistillationModel implements AutoCloseable {
    /** A projection's delta, as the student graph needs it. */
    record MatrixDelta(BinaryDelta delta) {
    }

    private final ModelConfig config;
    private final LlamaGraph teacher;
    private final LlamaGraph student;
    private final float[] teacherEmbedding;
    private final float[] studentEmbedding;
    private final Map<String, String> matrixOfVariable;
    private final Map<String, String> variableOfMatrix;

    private DistillationModel(ModelConfig config, LlamaGraph teacher, LlamaGraph student, float[] teacherEmbedding,
                              float[] studentEmbedding) {
        this.config = config;
        this.teacher = teacher;
        this.student = student;
        this.teacherEmbedding = teacherEmbedding;
        this.studentEmbedding = studentEmbedding;
        this.matrixOfVariable = student.scaleVariables();
        this.variableOfMatrix = new HashMap<>();
        matrixOfVariable.forEach((variable, matrix) -> variableOfMatrix.put(matrix, variable));
    }

    /**
     * Checks that {@code delta} was made from {@code base}, that {@code finetuned} has the base's architecture and
     * that every 1-bit matrix is a decoder projection of it, then builds both graphs.
     */
    static DistillationModel open(Path base, Path finetuned, DeltaModel delta, DataType dataType, int batch, int sequence) {
        ModelConfig baseConfig = ModelConfig.read(base);
        ModelConfig finetunedConfig = ModelConfig.read(finetuned);
        requireSameArchitecture(baseConfig, finetunedConfig);
        if (sequence > baseConfig.contextLength()) {
            throw new BitDeltaException("sequence length " + sequence + " exceeds the model's context of "
                    + baseConfig.contextLength() + " tokens (" + baseConfig.configFile() + ": max_position_embeddings)");
        }
        try (ModelWeights baseWeights = ModelWeights.open(base); ModelWeights finetunedWeights = ModelWeights.open(finetuned)) {
            Fingerprint.requireMadeFrom(Fingerprint.of(baseWeights), base, delta, "the delta (" + delta + ")");
            Map<String, MatrixDelta> deltas = projectionDeltas(baseConfig, delta);
            Map<String, float[]> cache = new HashMap<>();
            LlamaGraph.Weights teacherWeights = new LlamaGraph.Weights() {
                @Override
                public float[] tensor(String name) {
                    return floats(finetunedWeights, name, baseConfig);
                }

                @Override
                public MatrixDelta delta(String name) {
                    return null;
                }
            };
            LlamaGraph.Weights studentWeights = new LlamaGraph.Weights() {
                @Override
                public float[] tensor(String name) {
                    Tensor replaced = delta.tensors().get(name);
                    return replaced != null ? replaced.toFloatArray()
                            : cache.computeIfAbsent(name, n -> floats(baseWeights, n, baseConfig));
                }

                @Override
                public MatrixDelta delta(String name) {
                    return deltas.get(name);
                }
            };
            String outputName = baseConfig.tiedEmbeddings() ? "model.embed_tokens.weight" : "lm_head.weight";
            // The cheaper, equal loss through the lm_head's Gram matrix needs one lm_head for teacher and student:
            // true whenever the delta was compressed from this fine-tune (it then holds the fine-tune's lm_head
            // whenever that differs from the base's).
            boolean sharedOutput = Arrays.equals(teacherWeights.tensor(outputName), studentWeights.tensor(outputName))
                    && Arrays.equals(teacherWeights.tensor("model.norm.weight"), studentWeights.tensor("model.norm.weight"));
            LlamaGraph teacherGraph = LlamaGraph.teacher(baseConfig, teacherWeights, dataType, batch, sequence);
            LlamaGraph studentGraph = LlamaGraph.student(baseConfig, studentWeights, dataType, batch, sequence, sharedOutput);
            return new DistillationModel(baseConfig, teacherGraph, studentGraph,
                    teacherWeights.tensor("model.embed_tokens.weight"), studentWeights.tensor("model.embed_tokens.weight"));
        }
    }

    private static float[] floats(ModelWeights weights, String name, ModelConfig config) {
        if (!weights.contains(name)) {
            throw new BitDeltaException(weights.location() + ": has no tensor '" + name + "', which a " + config.modelType()
                    + " model with the config " + config.configFile() + " needs");
        }
        return weights.tensor(name).toFloatArray();
    }

    /** A config field that decides the graph's shapes and arithmetic: its config.json name and how to read it. */
    private record ArchitectureField(String name, Function<ModelConfig, Object> value) {
    }

    /** The fields that must agree between base and fine-tune, in the order they are checked. */
    private static final List<ArchitectureField> ARCHITECTURE = List.of(
            new ArchitectureField("model_type", ModelConfig::modelType),
            new ArchitectureField("hidden_size", ModelConfig::hiddenSize),
            new ArchitectureField("intermediate_size", ModelConfig::intermediateSize),
            new ArchitectureField("num_hidden_layers", ModelConfig::layerCount),
            new ArchitectureField("num_attention_heads", ModelConfig::headCount),
            new ArchitectureField("num_key_value_heads", ModelConfig::keyValueHeadCount),
            new ArchitectureField("head_dim", ModelConfig::headDimension),
            new ArchitectureField("vocab_size", ModelConfig::vocabularySize),
            new ArchitectureField("rms_norm_eps", ModelConfig::normEpsilon),
            new ArchitectureField("rope_theta and rope scaling", ModelConfig::rotary),
            new ArchitectureField("tie_word_embeddings", ModelConfig::tiedEmbeddings),
            new ArchitectureField("sliding_window", ModelConfig::slidingWindow));

    private static void requireSameArchitecture(ModelConfig base, ModelConfig finetuned) {
        for (ArchitectureField field : ARCHITECTURE) {
            Object baseValue = field.value().apply(base);
            Object finetunedValue = field.value().apply(finetuned);
            if (!Objects.equals(baseValue, finetunedValue)) {
                throw new BitDeltaException(finetuned.configFile() + ": " + field.name() + " is " + finetunedValue + " but the base's ("
                        + base.configFile() + ") is " + baseValue + ": the fine-tune must have the base's architecture");
            }
        }
    }

    /** The delta's 1-bit matrices by projection name; anything that is not a projection of this model is refused. */
    private static Map<String, MatrixDelta> projectionDeltas(ModelConfig config, DeltaModel delta) {
        Map<String, long[]> projections = new LinkedHashMap<>();
        int queryWidth = config.headCount() * config.headDimension();
        int keyValueWidth = config.keyValueHeadCount() * config.headDimension();
        for (int layer = 0; layer < config.layerCount(); layer++) {
            for (Projection projection : Projection.values()) {
                long[] shape = switch (projection) {
                    case QUERY -> new long[]{queryWidth, config.hiddenSize()};
                    case KEY, VALUE -> new long[]{keyValueWidth, config.hiddenSize()};
                    case OUTPUT -> new long[]{config.hiddenSize(), queryWidth};
                    case GATE, UP -> new long[]{config.intermediateSize(), config.hiddenSize()};
                    case DOWN -> new long[]{config.hiddenSize(), config.intermediateSize()};
                };
                projections.put(projection.weightName(layer), shape);
            }
        }
        Map<String, MatrixDelta> result = new LinkedHashMap<>();
        for (BinaryDelta matrix : delta.matrices()) {
            long[] shape = projections.get(matrix.name());
            if (shape == null) {
                throw new BitDeltaException("the delta's 1-bit matrix '" + matrix.name() + "' is not a q/k/v/o/gate/up/down projection of this "
                        + config.layerCount() + "-layer " + config.modelType() + " model; distillation trains the scales of projections only");
            }
            if (matrix.rows() != shape[0] || matrix.cols() != shape[1]) {
                throw new BitDeltaException("the delta's matrix '" + matrix.name() + "' is " + matrix.rows() + "x" + matrix.cols()
                        + " but the model's is " + shape[0] + "x" + shape[1]);
            }
            result.put(matrix.name(), new MatrixDelta(matrix));
        }
        if (result.isEmpty()) {
            throw new BitDeltaException("the delta (" + delta + ") has no 1-bit matrices: there are no scales to distill");
        }
        return result;
    }

    ModelConfig config() {
        return config;
    }

    int rows() {
        return student.rows();
    }

    /** Token windows [batch][sequence] → embedded rows [batch · sequence, hidden] from one embedding table. */
    private INDArray embed(float[] table, int[][] windows) {
        int hidden = config.hiddenSize();
        double[] rowsOut = new double[rows() * hidden];
        int row = 0;
        for (int[] window : windows) {
            for (int token : window) {
                if (token < 0 || token >= config.vocabularySize()) {
                    throw new BitDeltaException("token id " + token + " is outside the vocabulary of " + config.vocabularySize());
                }
                for (int i = 0; i < hidden; i++) {
                    rowsOut[row * hidden + i] = table[token * hidden + i];
                }
                row++;
            }
        }
        if (row != rows()) {
            throw new IllegalArgumentException(row + " tokens for a graph of " + rows() + " rows");
        }
        if (student.dataType() == DataType.DOUBLE) {
            return Nd4j.create(rowsOut, new long[]{rows(), hidden}, DataType.DOUBLE);
        }
        float[] floats = new float[rowsOut.length];
        for (int i = 0; i < floats.length; i++) {
            floats[i] = (float) rowsOut[i];
        }
        return Nd4j.create(floats, new long[]{rows(), hidden}, 'c');
    }

    /** The fine-tune's logits of the windows, [batch · sequence, vocab]. */
    INDArray teacherLogits(int[][] windows) {
        return teacher.logits(embed(teacherEmbedding, windows));
    }

    /** What the student's loss compares against: the teacher's final hidden states or its logits. */
    INDArray teacherTarget(int[][] windows) {
        return teacher.teacherTarget(embed(teacherEmbedding, windows), student.gramLoss());
    }

    /** The student's logits of the windows with its current scales. */
    INDArray studentLogits(int[][] windows) {
        return student.logits(embed(studentEmbedding, windows));
    }

    /** Whether the loss goes through the shared lm_head's Gram matrix (see {@link LlamaGraph#student}). */
    boolean gramLoss() {
        return student.gramLoss();
    }

    /** The MSE loss of the student against {@link #teacherTarget} and its gradient per projection name. */
    LossAndGradients lossAndGradients(int[][] windows, INDArray teacherTarget) {
        return lossAndGradients(student.lossAndGradients(embed(studentEmbedding, windows), teacherTarget));
    }

    /** The same through SameDiff's calculateGradientsAndOutputs: the reference the tests hold the fast path to. */
    LossAndGradients lossAndGradientsBySameDiff(int[][] windows, INDArray teacherTarget) {
        return lossAndGradients(student.lossAndGradientsBySameDiff(embed(studentEmbedding, windows), teacherTarget));
    }

    private LossAndGradients lossAndGradients(OutAndGrad result) {
        double loss = result.getOutputs().get(LlamaGraph.LOSS).getDouble(0);
        Map<String, double[]> gradients = new LinkedHashMap<>();
        for (Map.Entry<String, String> entry : matrixOfVariable.entrySet()) {
            INDArray gradient = result.getGradients().get(entry.getKey());
            gradients.put(entry.getValue(), gradient.castTo(DataType.DOUBLE).toDoubleVector());
        }
        return new LossAndGradients(loss, gradients);
    }

    double loss(int[][] windows, INDArray teacherTarget) {
        return student.loss(embed(studentEmbedding, windows), teacherTarget);
    }

    record LossAndGradients(double loss, Map<String, double[]> gradients) {
    }

    /** Projection names with a trainable scale, in layer order. */
    List<String> matrices() {
        return List.copyOf(matrixOfVariable.values());
    }

    double[] scales(String matrix) {
        return student.scale(variableOf(matrix));
    }

    void setScales(String matrix, double[] scales) {
        student.setScale(variableOf(matrix), scales);
    }

    private String variableOf(String matrix) {
        String variable = variableOfMatrix.get(matrix);
        if (variable == null) {
            throw new IllegalArgumentException("no scale for '" + matrix + "' (matrices: " + Arrays.toString(matrixOfVariable.values().toArray()) + ")");
        }
        return variable;
    }

    @Override
    public void close() {
        // The graphs' arrays are off-heap buffers that ND4J frees when they become unreachable; nothing else is held.
    }
}
