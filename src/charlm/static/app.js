// The lyrics page: POST /v1/generate/stream, read the server-sent events as they arrive
// (fetch + ReadableStream, since EventSource cannot POST), then tint each character by
// its surprisal from /v1/score.  No libraries, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("controls");
const button = $("generate");
const lyrics = $("lyrics");
const statusLine = $("status");
const reuseSeed = $("reuse-seed");
const errorBox = $("error");
const copyButton = $("copy");
const legend = $("legend");

let uniformBits = 12;  // log2(vocabulary size), set from /v1/model
let copyCheck = false;  // whether the server can check samples against the training text (/v1/model)
let copyLabel = copyButton.innerHTML;  // restored after "已复制 ✓", however often it is clicked (set again in English)
let copyTimer = null;
let controller = null;  // the running request, so Stop (or a new Generate) can abort it
let startedAt = 0;  // when it began: a second click just after the first (a double click) is not a Stop
let maxText = Infinity;  // the longest text the server scores (/v1/model's limits.max_text): a longer one is not sent to be tinted
let text = "";

// The page's words: Chinese for a model of Chinese text, English otherwise (/v1/model's language).
const WORDS = {
  zh: {
    writing: "正在写…", chars: (n) => `${n} 字`, seconds: (s) => `${s} 秒`, seed: (s) => `种子 ${s}`,
    copied: (n) => `照抄训练文本最长 ${n} 字`, copiedSpan: (span) => `最长照抄「${span}」`,
    grams: (n, pct) => `${n} 字片段中 ${pct}% 见于训练文本`, copyDone: "已复制 ✓",
    score: (ppl, bits) => `困惑度 ${ppl} · ${bits} bits/字`, vocab: (n) => `${n} 个字`, params: (m) => `${m}M 参数`,
    best: (ppl, epoch) => `验证困惑度 ${ppl}（第 ${epoch} 轮）`, model: "模型", noModel: "读不到模型信息",
    reasons: { done: "", time_limit: "（到了时间上限，截断了）", max_length: "（到了长度上限，截断了）", disconnected: "（已停止）",
               shutdown: "（服务器关闭了，截断了）" },
    cutOff: "（中断了）", offline: "连不上服务器：它还在运行吗？", reuseSeed: "把这个种子填进“种子”框，可再写出同样的文字",
    unknownHint: "（把这些字去掉）", tooLong: (n) => `最多 ${n} 个字`, noHeads: "标点和空格不能做行头：请写上字",
    untinted: { long: (n) => `太长，没有着色（着色最多 ${n} 字）`, busy: "服务器忙，没有着色", other: "没有着色" },
  },
  en: {
    writing: "writing…", chars: (n) => `${n} characters`, seconds: (s) => `${s} s`, seed: (s) => `seed ${s}`,
    copied: (n) => `longest span copied from the training text: ${n} characters`, copiedSpan: (span) => `longest copied: "${span}"`,
    grams: (n, pct) => `${n}-grams seen in the training text: ${pct}%`, copyDone: "Copied ✓",
    score: (ppl, bits) => `perplexity ${ppl} · ${bits} bits/char`, vocab: (n) => `${n} characters`, params: (m) => `${m}M parameters`,
    best: (ppl, epoch) => `validation perplexity ${ppl} (epoch ${epoch})`, model: "model", noModel: "cannot read the model's description",
    reasons: { done: "", time_limit: " (cut at the time limit)", max_length: " (cut at the length limit)", disconnected: " (stopped)",
               shutdown: " (cut: the server was stopped)" },
    cutOff: " (cut off)", offline: "cannot reach the server: is it still running?", reuseSeed: "put this seed in the seed box, to write the same again",
    unknownHint: "(remove them)", tooLong: (n) => `at most ${n} characters`,
    noHeads: "punctuation and spaces head no line: give the letters the lines start with",
    untinted: { long: (n) => `not tinted: too long (at most ${n} characters)`, busy: "not tinted: the server is busy", other: "not tinted" },
  },
};
let W = WORDS.zh;

function speak(language) {
  if (language !== "en") return;  // the page is written in Chinese, with English glosses
  W = WORDS.en;
  document.documentElement.lang = "en";
  document.title = "Write · charlm";
  for (const el of document.querySelectorAll("[data-en]")) el.textContent = el.dataset.en;
  for (const el of document.querySelectorAll("[data-en-placeholder]")) el.placeholder = el.dataset.enPlaceholder;
  for (const el of document.querySelectorAll("[data-en-title]")) el.title = el.dataset.enTitle;
}

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

function showError(message, fromServer = false) {
  errorBox.textContent = "";
  errorBox.removeAttribute("lang");
  if (fromServer && W === WORDS.zh && message.endsWith(W.unknownHint)) {  // the server's English, then the page's hint
    const english = document.createElement("span");
    english.lang = "en";  // read in an English voice
    english.textContent = message.slice(0, -W.unknownHint.length);
    errorBox.append(english, W.unknownHint);
  } else {
    errorBox.textContent = message;
    if (fromServer && W === WORDS.zh) errorBox.lang = "en";
  }
  errorBox.hidden = !message;
  // On a phone (or a short window) the box can be below the screen: the button would seem to do nothing.
  if (message) {
    const box = errorBox.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) errorBox.scrollIntoView({ behavior: "smooth", block: "center" });
  }
}

function offerSeed(seed) {  // the seed of the text shown, to write it again: a button, for the keyboard too
  const none = seed === null || seed === undefined;
  if (none) delete statusLine.dataset.seed;
  else statusLine.dataset.seed = seed;
  reuseSeed.hidden = none;
  reuseSeed.title = W.reuseSeed;
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
      .replace('(remove them, or send "unknown": "skip" to drop them)', W.unknownHint);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function generate() {
  if (controller) {  // the button is Stop while a stream runs
    if (performance.now() - startedAt > 400) controller.abort();
    return;
  }
  showError("");
  const seed = $("seed").value.trim();
  const box = $("acrostic");  // (disabled, with its field hidden, for a model without line breaks)
  const acrostic = !box.disabled && heads(box.value) ? box.value.trim() : "";  // (punctuation alone heads no line)
  const body = {
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    ...(acrostic ? { acrostic } : { prefix: $("prefix").value, lines: Number($("lines").value) || 8 }),
  };
  if (seed !== "") body.seed = Number(seed);
  const width = $("max-line-length").value.trim();  // (the lines of an acrostic too; left empty, the server's default)
  if (width !== "") body.max_line_length = Number(width);
  if (copyCheck) body.check_copy = true;
  controller = new AbortController();
  startedAt = performance.now();
  setBusy(true);
  lyrics.classList.add("streaming");
  const oldStatus = statusLine.textContent, oldTitle = statusLine.title, oldSeed = statusLine.dataset.seed ?? null;
  statusLine.textContent = W.writing;
  statusLine.title = "";  // (the old text's copy check)
  offerSeed(null);  // not the old text's seed while a new one is written
  const prefixChars = acrostic ? 0 : [...body.prefix].length;  // the server's count leaves the prefix out: so does a stopped one's
  let failed = false;  // the connection broke (the server stopped): not the user's Stop
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
        const first = fresh === null;
        if (first) legend.hidden = true;  // the old text's perplexity is not the new one's
        fresh = (fresh || "") + data.samples[0];
        text = fresh;
        render(text);
        // On a phone the sheet is below the controls: bring it into view, once it has grown to hold the text.
        if (first && lyrics.getBoundingClientRect().top > window.innerHeight * 0.6) {
          lyrics.closest(".sheet").scrollIntoView({ behavior: "smooth", block: "start" });
        }
      } else if (event === "done") {
        summary = data;
      } else if (event === "error") {
        throw new Error(data.error);
      }
    }
  } catch (err) {
    if (err.name === "TypeError") {  // fetch's "Failed to fetch", a stream's "network error": the server is gone
      failed = true;
      showError(W.offline);
    } else if (err.name !== "AbortError") showError(err.message || String(err), true);
  } finally {
    controller = null;
    lyrics.classList.remove("streaming");
    setBusy(false);
  }
  if (summary) {
    statusLine.textContent = `${W.chars(summary.chars)} · ${W.seconds(summary.elapsed_s.toFixed(2))} · ${W.seed(summary.seed)}${W.reasons[summary.finish_reason] || ""}`;
    offerSeed(summary.seed);
    const copy = summary.copies && summary.copies[0];
    if (copy) {  // how much of it is copied from the training text: new lyrics, or recited ones?
      statusLine.textContent += ` · ${W.copied(copy.longest)}`;
      const share = copy.ngram_share == null ? "" : ` · ${W.grams(copy.n, Math.round(copy.ngram_share * 100))}`;
      statusLine.title = `${W.copiedSpan(copy.span)}${share}`;
    }
  } else if (fresh) {
    const chars = Math.max(0, [...fresh].length - prefixChars);
    statusLine.textContent = `${W.chars(chars)}${textSeed !== null ? ` · ${W.seed(textSeed)}` : ""}${failed ? W.cutOff : W.reasons.disconnected}`;
    offerSeed(textSeed);  // (none: not the seed of an earlier text)
  } else {  // nothing new came: the old text, its status and seed, stay
    statusLine.textContent = oldStatus;
    statusLine.title = oldTitle;
    offerSeed(oldSeed);
  }
  if (fresh && $("tint").checked) await tint(fresh);
}

async function tint(plain) {
  const n = [...plain].length;
  if (n < 2) return;
  const untinted = (why) => {  // said after the status, so that a checked box with no tint is not a mystery
    if (text === plain && $("tint").checked && !statusLine.textContent.endsWith(why)) statusLine.textContent += ` · ${why}`;
  };
  if (n > maxText) return untinted(W.untinted.long(maxText.toLocaleString()));
  try {
    const response = await fetch("/v1/score", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: plain, unknown: "skip" }),
    });
    if (!response.ok) return untinted(response.status === 503 ? W.untinted.busy : W.untinted.other);
    const score = await response.json();
    if (text !== plain || !$("tint").checked) return;  // a newer text is showing, or the tint was turned off meanwhile
    // surprisal[i] is of score.text's i-th character: plain's, read as the model reads (a line break as a space for a
    // model trained with --newlines space); a text the server read at another length cannot be tinted
    if ([...score.text].length !== [...plain].length) return;
    renderTinted(plain, score.surprisal, uniformBits);
    $("score-summary").textContent = W.score(score.perplexity == null ? "∞" : score.perplexity.toFixed(1), score.bits_per_character.toFixed(2));
    legend.hidden = false;
  } catch {
    // tinting is a nicety: the plain text stays
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  generate();
});
// Beside the text (a wide window), the controls stay in view as the page scrolls; in a window shorter than they are,
// they scroll by themselves, down to the bottom of the window whatever the heading above them leaves (style.css).
function fitControls() {
  if (getComputedStyle(form).position !== "sticky") {
    form.style.maxHeight = "";
    return;
  }
  const top = Math.max(16, form.getBoundingClientRect().top);
  form.style.maxHeight = `${Math.max(240, window.innerHeight - top - 16)}px`;
}
addEventListener("scroll", fitControls, { passive: true });
addEventListener("resize", fitControls);
fitControls();

// A form the browser refuses to send (its own message by the box) clears the last request's error: it is of another text.
form.addEventListener("invalid", () => showError(""), true);

// An acrostic writes one line per character, each starting with it: the prefix and the line count step aside.
function acrosticMode() {
  const on = !$("acrostic").disabled && heads($("acrostic").value) > 0;
  $("prefix").disabled = on;
  $("lines").disabled = on;
}
$("acrostic").addEventListener("input", acrosticMode);
acrosticMode();

// Ctrl/Cmd+Enter in the prefix box generates.
$("prefix").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    if (controller) generate();  // Stop
    else form.requestSubmit();  // the form's own checks first, as a click on the button has them
  }
});

// The tint follows its box: off shows the plain text, on tints the text already there.
$("tint").addEventListener("change", () => {
  if (controller || !text) return;  // a text being written is tinted when it is done
  if ($("tint").checked) tint(text);
  else {
    render(text);
    legend.hidden = true;
  }
});

// The seed of the text shown goes into the seed box, to write the same again.
reuseSeed.addEventListener("click", () => {
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
  copyButton.textContent = W.copyDone;
  clearTimeout(copyTimer);
  copyTimer = setTimeout(() => { copyButton.innerHTML = copyLabel; }, 1500);
});

// Limits in characters as the server counts them, not in the UTF-16 units of maxlength (an emoji, or a rare
// character such as 𠀀, is two of those): code points; an acrostic's heads as a reader sees them, less those made of
// spaces or punctuation alone (sampling.NOT_A_HEAD: the same class).  (A function: acrosticMode uses it above.)
const codePoints = (s) => [...s].length;
function heads(s) {
  const split = (t) => typeof Intl.Segmenter === "function" ? [...new Intl.Segmenter().segment(t)].map((c) => c.segment) : [...t];
  // the rest joined and split again, as acrostic_heads(acrostic_letters(s)) does: 🇺，🇸 is one flag there
  return split(split(s).filter((c) => !/^[\t\n\v\f\r\x1c-\x1f\x85\p{Z}\ufeff\p{P}]+$/u.test(c)).join("")).length;
}
function limit(input, count, max) {
  const check = () => {
    const n = count(input.value);
    // (an acrostic of punctuation alone is refused, as the server refuses it; a blank box is no acrostic)
    input.setCustomValidity(n > max ? W.tooLong(max) : count === heads && n === 0 && input.value.trim() ? W.noHeads : "");
  };
  input.addEventListener("input", check);
  check();
}

async function loadModelInfo(attempt = 0) {
  try {
    const response = await fetch("/v1/model");
    if (!response.ok) throw new Error(response.statusText);
    const info = await response.json();
    speak(info.language);
    copyLabel = copyButton.innerHTML;
    const m = info.model_config;
    const parts = [
      `${m.cell.toUpperCase()} ${m.num_layers}×${m.hidden_size}`,
      W.vocab(info.vocab_size.toLocaleString()),
      W.params((info.parameters / 1e6).toFixed(2)),
    ];
    const epoch = (e) => (Number.isInteger(e) ? e : e.toFixed(2));  // validated within an epoch (--eval-every): a fraction
    if (info.best && info.best.val_ppl != null) parts.push(W.best(info.best.val_ppl.toFixed(1), epoch(info.best.epoch)));
    $("model-info").textContent = `${W.model} · ` + parts.join(" · ");
    uniformBits = Math.max(4, Math.log2(info.vocab_size));
    copyCheck = info.copy_check === true;
    const lim = info.limits;
    limit($("prefix"), codePoints, lim.max_prefix);
    // The box starts with 分开; a model trained on other text starts from its own first prefix instead.
    if ($("prefix").value === $("prefix").defaultValue) $("prefix").value = info.default_prefix ?? $("prefix").value;
    $("lines").max = lim.max_lines;
    limit($("acrostic"), heads, lim.max_lines);  // a line per character
    $("acrostic-field").hidden = !info.has_newline;  // a model trained without line breaks writes no lines
    $("acrostic").disabled = !info.has_newline;  // (and a value the browser put back there cannot stop the form unseen)
    acrosticMode();
    if (Number($("lines").value) > lim.max_lines) $("lines").value = lim.max_lines;  // else the form refuses to send
    $("max-line-length").max = lim.max_length;  // a line is at most a sample's length
    if (Number($("max-line-length").value) > lim.max_length) $("max-line-length").value = lim.max_length;
    maxText = lim.max_text;
  } catch {
    $("model-info").textContent = W.noModel;
    // a server still starting (or restarted): asked again, less often each time, so that its limits and language apply
    setTimeout(() => loadModelInfo(attempt + 1), Math.min(30, 2 ** attempt) * 1000);
  }
}

loadModelInfo();
