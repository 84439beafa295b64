package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/** The {@code bitdelta} command line: one subcommand per job. */
@Command(name = "bitdelta", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "BitDelta for the JVM: 1-bit fine-tune deltas.",
        subcommands = {CompressCommand.class, DistillCommand.class, MergeCommand.class, InspectCommand.class, EvalCommand.class, GenerateCommand.class, ServeCommand.class, DemoCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the command line with the given streams and returns the exit code (0 ok, 1 error, 2 usage). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine commandLine = new CommandLine(new Main());
        commandLine.setOut(out);
        commandLine.setErr(err);
        commandLine.setExecutionExceptionHandler((exception, line, parseResult) -> {
            if (exception instanceof BitDeltaException) {
                err.println("bitdelta: error: " + exception.getMessage());
            } else {
                err.println("bitdelta: internal error: " + exception);
                exception.printStackTrace(err);
            }
            err.flush();
            return 1;
        });
        int code = commandLine.execute(args);
        out.flush();
        err.flush();
        return code;
    }

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    static final class Version implements CommandLine.IVersionProvider {
        public String[] getVersion() {
            return new String[]{"bitdelta " + org.bitdelta.BitDelta.version() + " (Java " + Runtime.version() + ")"};
        }
    }
}
