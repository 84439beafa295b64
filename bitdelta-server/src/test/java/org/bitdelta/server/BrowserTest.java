package org.bitdelta.server;

import org.bitdelta.serving.ChatMessage;
import org.bitdelta.serving.Request;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.openqa.selenium.By;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.TakesScreenshot;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.support.ui.ExpectedConditions;
import org.openqa.selenium.support.ui.WebDriverWait;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The web page in a real browser: headless Chromium (Debian's chromium and chromium-driver; Selenium is told where
 * they are, so it downloads nothing) opens the page, enters the API key, asks three models the same question and
 * sees three different answers streamed side by side, each the engine's own greedy answer. The screenshot is kept
 * in target/browser-test/page.png.
 *
 * <p>Without Chromium the test is skipped, loudly; with -Dbitdelta.require.browser=true (CI) it fails instead.
 */
class BrowserTest {
    static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    static final Path CHROMEDRIVER = Path.of("/usr/bin/chromedriver");
    static final String KEY = "browser-key";
    static final String PROMPT = "Once upon a time";
    static final int MAX_TOKENS = 40;
    static final List<String> MODELS = List.of(TestServer.BASE_ALIAS, "alice", "shakespeare");

    static void requireBrowser() {
        if (Files.isExecutable(CHROMIUM) && Files.isExecutable(CHROMEDRIVER)) {
            return;
        }
        String reason = "BROWSER TEST NOT RUN: " + CHROMIUM + " and " + CHROMEDRIVER + " are needed (Debian: apt-get install chromium "
                + "chromium-driver); missing: " + (Files.isExecutable(CHROMIUM) ? "" : CHROMIUM + " ") + (Files.isExecutable(CHROMEDRIVER) ? "" : CHROMEDRIVER);
        if (Boolean.getBoolean("bitdelta.require.browser")) {
            Assertions.fail(reason + " (-Dbitdelta.require.browser=true: CI must run it)");
        }
        System.err.println("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n" + reason
                + "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
        Assumptions.abort(reason);
    }

    @Test
    void threeModelsStreamThreeDifferentAnswersSideBySide() throws Exception {
        requireBrowser();
        Path artifacts = Path.of(System.getProperty("bitdelta.browser.artifacts", "target/browser-test"));
        Files.createDirectories(artifacts);
        Path profile = Files.createTempDirectory(artifacts, "chromium-profile-");
        Map<String, String> expected = MODELS.stream().collect(Collectors.toMap(model -> model, model -> TestServer.engine()
                .submit(Request.chat(model, List.of(ChatMessage.user(PROMPT))).temperature(0).maxTokens(MAX_TOKENS)).result().text()));
        assertEquals(3, expected.values().stream().distinct().count(), "the three models answer differently in-process: " + expected);

        ChromeOptions options = new ChromeOptions();
        options.setBinary(CHROMIUM.toFile());
        options.addArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--user-data-dir=" + profile.toAbsolutePath());
        ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(CHROMEDRIVER.toFile()).usingAnyFreePort().build();
        try (BitDeltaServer server = TestServer.start(ServerOptions.defaults().apiKey(KEY))) {
            ChromeDriver driver = new ChromeDriver(service, options);
            try {
                driver.get(server.url().toString());
                WebDriverWait wait = new WebDriverWait(driver, Duration.ofSeconds(60));
                // Without the key the page says so; with it, the models appear.
                wait.until(ExpectedConditions.textToBePresentInElementLocated(By.id("message"), "401"));
                WebElement key = driver.findElement(By.id("api-key"));
                key.sendKeys(KEY);
                driver.findElement(By.id("reload")).click();
                wait.until(ExpectedConditions.presenceOfElementLocated(By.cssSelector("#model-list input[value='alice']")));
                for (WebElement box : driver.findElements(By.cssSelector("#model-list input[type=checkbox]"))) {
                    if (box.isSelected() != MODELS.contains(box.getAttribute("value"))) {
                        box.click();
                    }
                }
                new org.openqa.selenium.support.ui.Select(driver.findElement(By.id("endpoint"))).selectByValue("chat");
                setValue(driver, "prompt", PROMPT);
                setValue(driver, "max-tokens", Integer.toString(MAX_TOKENS));
                setValue(driver, "temperature", "0");
                driver.findElement(By.id("generate")).click();
                wait.until(d -> d.findElements(By.cssSelector(".answer-card")).size() == 3 && d.findElements(By.cssSelector(".answer-card"))
                        .stream().allMatch(card -> "done".equals(card.getAttribute("data-state")) || "error".equals(card.getAttribute("data-state"))));

                List<WebElement> cards = driver.findElements(By.cssSelector(".answer-card"));
                for (WebElement card : cards) {
                    String model = card.getAttribute("data-model");
                    String answer = card.findElement(By.cssSelector(".answer")).getText();
                    String stats = card.findElement(By.cssSelector(".stats")).getText();
                    System.out.printf("browser: %-12s %s%n              \"%s\"%n", model, stats, answer);
                    assertEquals("done", card.getAttribute("data-state"), model + ": " + card.getText());
                    assertEquals(normalize(expected.get(model)), normalize(answer), model + " shows the engine's answer");
                    assertTrue(stats.contains("tokens/s"), model + " shows its speed: " + stats);
                    assertTrue(stats.contains("iB"), model + " shows its memory: " + stats);
                }
                assertEquals(MODELS, cards.stream().map(card -> card.getAttribute("data-model")).toList());
                assertEquals(3, cards.stream().map(card -> card.findElement(By.cssSelector(".answer")).getText()).distinct().count());
                String summary = driver.findElement(By.id("memory-summary")).getText();
                assertTrue(summary.contains("fine-tunes add"), summary);

                File screenshot = ((TakesScreenshot) driver).getScreenshotAs(OutputType.FILE);
                Path page = artifacts.resolve("page.png");
                Files.copy(screenshot.toPath(), page, StandardCopyOption.REPLACE_EXISTING);
                System.out.println("browser: screenshot " + page.toAbsolutePath());
            } finally {
                driver.quit();
                deleteRecursively(profile);
            }
        }
    }

    private static void deleteRecursively(Path folder) throws java.io.IOException {
        try (var paths = Files.walk(folder)) {
            for (Path path : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(path);
            }
        }
    }

    private static void setValue(ChromeDriver driver, String id, String value) {
        WebElement element = driver.findElement(By.id(id));
        element.clear();
        element.sendKeys(value);
    }

    /** The browser renders the text's whitespace as the page's pre-wrap shows it; compare without trailing spaces. */
    private static String normalize(String text) {
        return text.strip();
    }
}
