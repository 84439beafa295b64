package org.bitdelta.cuda;

import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.TestPlan;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.List;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectPackage;

/**
 * Runs this module's tests (package org.bitdelta.cuda and below) where there is a Java runtime but no Maven: the
 * GPU host of bench/check-device.sh. One line per test (PASS / FAIL / SKIP with the reason), the failures' stack
 * traces, and a last line "tests: N passed, F failed, S skipped"; exit status 1 when a test failed or none ran.
 * Not a test itself (surefire runs *Test classes only).
 */
public final class GpuTestLauncher {
    private GpuTestLauncher() {
    }

    public static void main(String[] args) {
        String root = args.length > 0 ? args[0] : "org.bitdelta.cuda";
        LauncherDiscoveryRequest request = LauncherDiscoveryRequestBuilder.request().selectors(selectPackage(root)).build();
        Listener listener = new Listener();
        Launcher launcher = LauncherFactory.create();
        launcher.execute(request, listener);
        for (String failure : listener.failures) {
            System.out.println(failure);
        }
        System.out.printf("tests: %d passed, %d failed, %d skipped%n", listener.passed, listener.failures.size(), listener.skipped);
        System.exit(listener.failures.isEmpty() && listener.passed > 0 ? 0 : 1);
    }

    private static final class Listener implements TestExecutionListener {
        private TestPlan plan;
        int passed;
        int skipped;
        final List<String> failures = new ArrayList<>();

        @Override
        public void testPlanExecutionStarted(TestPlan testPlan) {
            plan = testPlan;
        }

        private String name(TestIdentifier test) {
            String parent = plan.getParent(test).map(TestIdentifier::getDisplayName).orElse("");
            return parent.isEmpty() ? test.getDisplayName() : parent + " > " + test.getDisplayName();
        }

        @Override
        public void executionSkipped(TestIdentifier test, String reason) {
            if (test.isTest()) {
                skipped++;
            }
            System.out.println("SKIP " + name(test) + ": " + reason);
        }

        @Override
        public void executionFinished(TestIdentifier test, TestExecutionResult result) {
            // A container that fails (@BeforeAll) fails its tests too: report it as well.
            if (!test.isTest() && result.getStatus() == TestExecutionResult.Status.SUCCESSFUL) {
                return;
            }
            switch (result.getStatus()) {
                case SUCCESSFUL -> {
                    passed++;
                    System.out.println("PASS " + name(test));
                }
                case ABORTED -> {
                    skipped++;
                    System.out.println("SKIP " + name(test) + ": " + result.getThrowable().map(Throwable::getMessage).orElse(""));
                }
                case FAILED -> {
                    StringWriter trace = new StringWriter();
                    result.getThrowable().ifPresent(error -> error.printStackTrace(new PrintWriter(trace)));
                    System.out.println("FAIL " + name(test));
                    failures.add("FAIL " + name(test) + "\n" + trace);
                }
            }
        }
    }
}
