// The lyrics page: POST /v1/generate/stream, read the server-sent events as they arrive
// (fetch + ReadableStream, since EventSource cannot POST), then tint each character by
// its surprisal from /v1/score.  No libraries, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("controls");
const button = $("generate");
const lyrics = $("lyrics");
const statusLine = $("status");
const errorBox = $("error");
const copyButton = $("copy");
const legend = $("legend");

let uniformBits = 12;  // log2(vocabulary size), set from /v1/model
let copyCheck = false;  // whether the server can check samples against the training text (/v1/model)
const copyLabel = copyButton.innerHTML;  // restored after "已复制 ✓", however often it is clicked
let copyTimer = null;
let controller = null;  // the running request, so Stop (or a new Generate) can abort it
let text = "";

for (const [input, out, digits] of [["temperature", "temperature-out", 2], ["top-p", "top-p-out", 2]]) {
  const show = () => { $(out).value = Number($(input).value).toFixed(digits); };
  $(input).addEventListener("input", show);
  show();
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  button.classList.toggle("stop", busy);
  copyButton.disabled = busy || !text;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function render(plain) {
  // Plain text while streaming: one <p> per line, the last one with a caret.
  lyrics.dataset.empty = "false";
  lyrics.replaceChildren(...plain.split("\n").map((line) => {
    const p = document.createElement("p");
    p.textContent = line || "\u00a0";
    return p;
  }));
}

// Surprisal t in [0, 1] of the way to "as surprised as a uniform guess over the vocabulary";
// the curve keeps the expected characters clean so the surprising ones stand out.
function renderTinted(plain, surprisal, maxBits) {
  lyrics.replaceChildren();
  let p = document.createElement("p");
  [...plain].forEach((ch, i) => {
    if (ch === "\n") {
      if (!p.childNodes.length) p.textContent = "\u00a0";
      lyrics.append(p);
      p = document.createElement("p");
      return;
    }
    const span = document.createElement("span");
    span.textContent = ch;
    const bits = surprisal[i];
    if (bits != null) {
      const t = Math.pow(Math.min(1, bits / maxBits), 1.5);
      span.style.setProperty("--t", t.toFixed(3));
      span.className = "s";
      span.title = `${bits.toFixed(2)} bits`;
    }
    p.append(span);
  });
  if (p.childNodes.length) lyrics.append(p);
}

// Parse a text/event-stream body: yields {event, data} for each blank-line-terminated block.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      yield { event, data: data.length ? JSON.parse(data.join("\n")) : null };
    }
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    // The API's hint for unknown characters names a request field the page does not offer.
    return (body.error || JSON.stringify(body.detail || body))
      .replace('(remove them, or send "unknown": "skip" to drop them)', "(remove them from the text)");
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

const REASONS = {
  done: "",
  time_limit: "（到了时间上限，截断了）",
  max_length: "（到了长度上限，截断了）",
  disconnected: "（已停止）",
};

async function generate() {
  if (controller) {  // the button is Stop while a stream runs
    controller.abort();
    return;
  }
  showError("");
  const seed = $("seed").value.trim();
  const body = {
    prefix: $("prefix").value,
    lines: Number($("lines").value) || 8,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
  };
  if (seed !== "") body.seed = Number(seed);
  if (copyCheck) body.check_copy = true;
  controller = new AbortController();
  setBusy(true);
  lyrics.classList.add("streaming");
  const oldStatus = statusLine.textContent;
  statusLine.textContent = "正在写…";
  // On a phone the sheet is below the controls: bring it into view.
  const sheetTop = lyrics.getBoundingClientRect().top;
  if (sheetTop > window.innerHeight * 0.6) lyrics.closest(".sheet").scrollIntoView({ behavior: "smooth", block: "start" });
  let summary = null;
  let textSeed = null;  // the seed of the new text (its first chunk says it), so that even a stopped one can be written again
  let fresh = null;  // the new text; the old one stays until the first characters arrive
  try {
    const response = await fetch("/v1/generate/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const { event, data } of events(response)) {
      if (event === "chunk") {
        if (data.seed !== undefined) textSeed = data.seed;
        if (fresh === null) legend.hidden = true;
        fresh = (fresh || "") + data.samples[0];
        text = fresh;
        render(text);
      } else if (event === "done") {
        summary = data;
      } else if (event === "error") {
        throw new Error(data.error);
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message || String(err));
  } finally {
    controller = null;
    lyrics.classList.remove("streaming");
    setBusy(false);
  }
  if (summary) {
    statusLine.textContent = `${summary.chars} 字 · ${summary.elapsed_s.toFixed(2)} 秒 · 种子 ${summary.seed}${REASONS[summary.finish_reason] || ""}`;
    statusLine.dataset.seed = summary.seed;
    statusLine.title = "";
    const copy = summary.copies && summary.copies[0];
    if (copy) {  // how much of it is copied from the training text: new lyrics, or recited ones?
      statusLine.textContent += ` · 照抄训练文本最长 ${copy.longest} 字`;
      const share = copy.ngram_share == null ? "" : ` · ${copy.n} 字片段见于训练文本 ${Math.round(copy.ngram_share * 100)}%`;
      statusLine.title = `最长照抄「${copy.span}」${share}`;
    }
  } else if (fresh) {
    statusLine.textContent = `${[...fresh].length} 字${textSeed !== null ? ` · 种子 ${textSeed}` : ""}${REASONS.disconnected}`;
    statusLine.title = "";
    if (textSeed !== null) statusLine.dataset.seed = textSeed;
    else delete statusLine.dataset.seed;  // not the seed of an earlier text
  } else {
    statusLine.textContent = oldStatus;
  }
  if (fresh && $("tint").checked) await tint(fresh);
}

async function tint(plain) {
  if ([...plain].length < 2) return;
  try {
    const response = await fetch("/v1/score", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: plain, unknown: "skip" }),
    });
    if (!response.ok) return;
    const score = await response.json();
    if (score.text !== plain || text !== plain) return;  // a newer text is showing
    renderTinted(plain, score.surprisal, uniformBits);
    $("score-summary").textContent = `困惑度 ${score.perplexity.toFixed(1)} · ${score.bits_per_char.toFixed(2)} bits/字`;
    legend.hidden = false;
  } catch {
    // tinting is a nicety: the plain text stays
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  generate();
});

// Ctrl/Cmd+Enter in the prefix box generates.
$("prefix").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    generate();
  }
});

// Clicking the seed in the status line puts it in the seed box, to write the same again.
statusLine.addEventListener("click", () => {
  if (statusLine.dataset.seed) $("seed").value = statusLine.dataset.seed;
});

copyButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (plain http on another host): select the text for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(lyrics);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { document.execCommand("copy"); } catch { /* the selection is there */ }
  }
  copyButton.textContent = "已复制 ✓";
  clearTimeout(copyTimer);
  copyTimer = setTimeout(() => { copyButton.innerHTML = copyLabel; }, 1500);
});

async function loadModelInfo() {
  try {
    const info = await (await fetch("/v1/model")).json();
    const m = info.model_config;
    const parts = [
      `${m.cell.toUpperCase()} ${m.num_layers}×${m.hidden_size}`,
      `${info.vocab_size.toLocaleString()} 个字`,
      `${(info.parameters / 1e6).toFixed(2)}M 参数`,
    ];
    if (info.best && info.best.val_ppl != null) parts.push(`验证困惑度 ${info.best.val_ppl.toFixed(1)}（第 ${info.best.epoch} 轮）`);
    $("model-info").textContent = "模型 · " + parts.join(" · ");
    uniformBits = Math.max(4, Math.log2(info.vocab_size));
    copyCheck = info.copy_check === true;
    const lim = info.limits;
    $("prefix").maxLength = lim.max_prefix;
    // The box starts with 分开; a model trained on other text starts from its own first prefix instead.
    if ($("prefix").value === $("prefix").defaultValue) $("prefix").value = info.default_prefix ?? $("prefix").value;
    $("lines").max = lim.max_lines;
    if (Number($("lines").value) > lim.max_lines) $("lines").value = lim.max_lines;  // else the form refuses to send
  } catch {
    $("model-info").textContent = "读不到模型信息";
  }
}

loadModelInfo();
