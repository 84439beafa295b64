// The side-by-side page: one prompt, several models (the base and its BitDelta fine-tunes), each answer streamed
// from the OpenAI-compatible API. EventSource cannot POST, so the stream is read with fetch and a ReadableStream.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { controllers: [], models: [], tenants: new Map(), baseAlias: null, loads: 0 };

function apiKey() {
  return $("api-key").value.trim();
}

function headers(json) {
  const result = {};
  if (json) result["Content-Type"] = "application/json";
  if (apiKey()) result["Authorization"] = "Bearer " + apiKey();
  return result;
}

function formatBytes(bytes) {
  if (bytes == null || bytes < 0) return "?";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return (unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)) + " " + units[unit];
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return response.status + ": " + body.error.message;
  } catch (ignored) { /* not JSON: fall through to the status line */ }
  return response.status + " " + response.statusText;
}

function showMessage(text) {
  $("message").textContent = text || "";
}

// ---------------------------------------------------------------------------------------------- models and memory

// Loads can overlap (the key field's change and the reload button fire together): only the latest one renders, and
// it keeps each listed model's checkbox, ticked or not, as the user left it.
async function loadModels() {
  const load = ++state.loads;
  showMessage("");
  const list = $("model-list");
  let models, tenants;
  try {
    const [modelsResponse, tenantsResponse] = await Promise.all([
      fetch("/v1/models", { headers: headers(false) }),
      fetch("/v1/tenants", { headers: headers(false) }),
    ]);
    if (!modelsResponse.ok) throw new Error(await errorText(modelsResponse));
    if (!tenantsResponse.ok) throw new Error(await errorText(tenantsResponse));
    models = (await modelsResponse.json()).data;
    tenants = await tenantsResponse.json();
  } catch (error) {
    if (load !== state.loads) return;
    list.textContent = "";
    showMessage("Cannot list the models: " + error.message + (String(error.message).startsWith("401") ? " (enter the API key above)" : ""));
    return;
  }
  if (load !== state.loads) return;
  state.models = models.map((model) => model.id);
  state.tenants = new Map(tenants.data.map((tenant) => [tenant.id, tenant]));
  const baseAlias = tenants.base_alias;
  state.baseAlias = baseAlias;
  const shown = new Map([...list.querySelectorAll("label.model-choice")].map((label) => [label.querySelector("input").value, label]));
  const anyTicked = list.querySelector("input:checked") !== null;
  for (const [id, label] of shown) {
    if (!state.models.includes(id)) label.remove();
  }
  for (const id of state.models) {
    const isBase = id === "base" || id === baseAlias;
    const tenant = state.tenants.get(id === baseAlias ? "base" : id);
    let label = shown.get(id);
    if (!label) {
      label = document.createElement("label");
      label.className = "model-choice";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = id;
      box.name = "model";
      // By default: the base under its folder name and every fine-tune ("base" itself would be a duplicate column);
      // a model that appears beside ticked ones is left unticked.
      box.checked = anyTicked ? false : id !== "base";
      const name = document.createElement("span");
      name.textContent = id;
      const bytes = document.createElement("span");
      bytes.className = "bytes";
      label.append(box, name, bytes);
    }
    label.querySelector(".bytes").textContent = tenant
        ? (isBase ? formatBytes(tenant.bytes) + " weights" : "+" + formatBytes(tenant.bytes) + " delta") : "";
    list.append(label); // in the server's order (an existing label moves; its checkbox stays the same element)
  }
  const base = state.tenants.get("base");
  const deltas = [...state.tenants.values()].filter((tenant) => tenant.id !== "base");
  if (base && deltas.length) {
    const total = deltas.reduce((sum, tenant) => sum + tenant.bytes, 0);
    $("memory-summary").textContent = "- base " + formatBytes(base.bytes) + ", " + deltas.length + " fine-tunes add "
        + formatBytes(total) + " (" + (100 * total / base.bytes).toFixed(1) + "% of the base)";
  } else {
    $("memory-summary").textContent = "";
  }
}

// ---------------------------------------------------------------------------------------------- one answer

function answerCard(model) {
  const card = document.createElement("article");
  card.className = "answer-card";
  card.dataset.model = model;
  card.dataset.state = "waiting";
  const header = document.createElement("header");
  const title = document.createElement("h2");
  title.textContent = model;
  const stats = document.createElement("div");
  stats.className = "stats";
  const tenant = state.tenants.get(model === state.baseAlias ? "base" : model);
  stats.dataset.memory = tenant ? formatBytes(tenant.bytes) + (tenant.id === "base" ? " (base weights)" : " delta") : "";
  stats.textContent = stats.dataset.memory + " - waiting";
  header.append(title, stats);
  const text = document.createElement("div");
  text.className = "text";
  card.append(header, text);
  return { card, stats, text };
}

function updateStats(view, tokens, firstTokenAt, lastTokenAt, note) {
  let rate = "";
  if (tokens > 1 && lastTokenAt > firstTokenAt) {
    rate = ", " + ((tokens - 1) / ((lastTokenAt - firstTokenAt) / 1000)).toFixed(1) + " tokens/s";
  }
  view.stats.textContent = view.stats.dataset.memory + " - " + tokens + " tokens" + rate + (note ? " - " + note : "");
  view.card.dataset.tokens = String(tokens);
}

// Reads an SSE body: events are separated by a blank line; their "data:" lines carry OpenAI's chunks.
async function* serverSentEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

async function streamAnswer(model, prompt, settings, controller) {
  const view = answerCard(model);
  $("answers").append(view.card);
  const chat = settings.endpoint === "chat";
  const body = { model, stream: true, stream_options: { include_usage: true }, max_tokens: settings.maxTokens, temperature: settings.temperature };
  if (settings.seed !== null) body.seed = settings.seed;
  if (chat) body.messages = [{ role: "user", content: prompt }];
  else body.prompt = prompt;
  if (!chat) {
    const echo = document.createElement("span");
    echo.className = "prompt-echo";
    echo.textContent = prompt;
    view.text.append(echo);
  }
  const answer = document.createElement("span");
  answer.className = "answer";
  view.text.append(answer);
  let tokens = 0, firstTokenAt = 0, lastTokenAt = 0;
  try {
    const response = await fetch(chat ? "/v1/chat/completions" : "/v1/completions", {
      method: "POST", headers: headers(true), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    view.card.dataset.state = "streaming";
    let finish = null;
    for await (const data of serverSentEvents(response.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices || []) {
        const text = chat ? (choice.delta && choice.delta.content) || "" : choice.text || "";
        if (text) {
          const now = performance.now();
          if (!firstTokenAt) firstTokenAt = now;
          lastTokenAt = now;
          tokens++;
          answer.textContent += text;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      updateStats(view, tokens, firstTokenAt, lastTokenAt, finish ? "finished (" + finish + ")" : "streaming");
    }
    view.card.dataset.state = "done";
    view.card.dataset.finish = finish || "";
    updateStats(view, tokens, firstTokenAt, lastTokenAt, "finished (" + (finish || "?") + ")");
  } catch (error) {
    if (error.name === "AbortError") {
      view.card.dataset.state = "stopped";
      updateStats(view, tokens, firstTokenAt, lastTokenAt, "stopped");
    } else {
      view.card.dataset.state = "error";
      const line = document.createElement("div");
      line.className = "error";
      line.textContent = "Error: " + error.message;
      view.text.append(line);
      updateStats(view, tokens, firstTokenAt, lastTokenAt, "error");
    }
  }
}

async function generate(event) {
  event.preventDefault();
  showMessage("");
  const models = [...$("model-list").querySelectorAll("input:checked")].map((box) => box.value);
  const prompt = $("prompt").value;
  if (!models.length) { showMessage("Choose at least one model."); return; }
  if (!prompt.trim()) { showMessage("Write a prompt."); return; }
  const seedText = $("seed").value.trim();
  const settings = {
    endpoint: $("endpoint").value,
    maxTokens: Number($("max-tokens").value) || 64,
    temperature: Number($("temperature").value) || 0,
    seed: seedText === "" ? null : Number(seedText),
  };
  stopAll();
  $("answers").textContent = "";
  state.controllers = models.map(() => new AbortController());
  $("generate").disabled = true;
  $("stop").disabled = false;
  document.body.dataset.running = "true";
  await Promise.all(models.map((model, i) => streamAnswer(model, prompt, settings, state.controllers[i])));
  state.controllers = [];
  $("generate").disabled = false;
  $("stop").disabled = true;
  document.body.dataset.running = "false";
  loadModels();
}

// Aborting a fetch closes its connection; the server then cancels the completion and frees its batch slot.
function stopAll() {
  state.controllers.forEach((controller) => controller.abort());
}

$("prompt-form").addEventListener("submit", generate);
$("stop").addEventListener("click", stopAll);
$("reload").addEventListener("click", loadModels);
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("bitdelta-api-key", apiKey());
  loadModels();
});
$("api-key").value = sessionStorage.getItem("bitdelta-api-key") || "";
loadModels();
