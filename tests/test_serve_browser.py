"""End to end: the lyrics page in real headless Chromium (Debian's chromium and chromium-driver) via selenium."""

import shutil
from pathlib import Path

import pytest

from charlm import serve

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_page_streams_lyrics_from_a_prefix(tiny_ckpt, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve.running(serve.create_app(tiny_ckpt)) as url:
        browser.get(url + "/")
        assert "写歌词" in browser.title
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)  # /v1/model answered

        prefix = browser.find_element(By.ID, "prefix")
        assert prefix.get_attribute("value") == "分开"
        prefix.clear()
        prefix.send_keys("不分开")
        lines = browser.find_element(By.ID, "lines")
        lines.clear()
        lines.send_keys("3")
        browser.find_element(By.ID, "generate").click()

        # Streamed lyrics start with the prefix; the stream ends (the button is Generate again) and the text is tinted.
        wait.until(lambda d: d.find_element(By.ID, "lyrics").text.startswith("不分开"))
        wait.until(lambda d: "busy" not in d.find_element(By.TAG_NAME, "body").get_attribute("class"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lyrics .s"))
        wait.until(lambda d: "bits/字" in d.find_element(By.ID, "score-summary").text)  # /v1/score's figures, read by name
        assert browser.find_element(By.ID, "score-summary").text.startswith("困惑度 ")
        text = browser.find_element(By.ID, "lyrics").text
        assert text.startswith("不分开") and len(text.splitlines()) == 3, text
        status = browser.find_element(By.ID, "status")
        assert "种子" in status.text
        assert "照抄训练文本最长" in status.text and "最长照抄「" in status.get_attribute("title")  # the copy check
        assert browser.find_element(By.ID, "copy").is_enabled()
        assert not browser.find_element(By.ID, "error").is_displayed()

        # A bad request shows the server's message, naming the field.
        prefix.clear()
        prefix.send_keys("分开☃")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "prefix" in browser.find_element(By.ID, "error").text and "☃" in browser.find_element(By.ID, "error").text
        assert "把这些字去掉" in browser.find_element(By.ID, "error").text  # not the API's "unknown": "skip"
        english = browser.find_element(By.CSS_SELECTOR, '#error span[lang="en"]')  # read in an English voice, the hint in Chinese
        assert english.text.startswith("prefix: ") and "把这些字" not in english.text

        # For a screen reader: every control has a name, and the status line is announced.
        names = browser.execute_script(
            "return [...document.querySelectorAll('input, button')].filter(e => e.offsetParent !== null)"
            ".map(e => [e.id, (e.labels && e.labels.length ? [...e.labels].map(l => l.textContent).join(' ') : '')"
            " + (e.getAttribute('aria-label') || '') + (e.tagName === 'BUTTON' ? e.textContent : '')])")
        assert all(name.strip() for _, name in names), names
        assert {"temperature", "top-p"} <= {i for i, _ in names}
        assert browser.find_element(By.ID, "status").get_attribute("role") == "status"

        # A line's spaces and tabs are shown as written (code, or lyrics set out with spaces), not collapsed into one.
        shown = browser.execute_script("const p = document.createElement('p'); p.textContent = '  if x:\\t y  z';"
                                       "document.getElementById('lyrics').append(p); const t = p.innerText; p.remove(); return t")
        assert shown == "  if x:\t y  z"

        shot = tmp_path / "lyrics-page.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "422" not in e["message"]]



def test_page_fits_the_servers_limits_and_its_copy_button_recovers(tiny_ckpt, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve.running(serve.create_app(tiny_ckpt, max_lines=3, max_length=50)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        # the page's 8 lines and 64-character lines would be over this server's limits, and the form would refuse to send
        assert browser.find_element(By.ID, "lines").get_attribute("value") == "3"
        width = browser.find_element(By.ID, "max-line-length")
        assert (width.get_attribute("value"), width.get_attribute("max")) == ("50", "50")
        width.clear()
        width.send_keys("6")  # the line length asked for is the one the lines keep
        browser.find_element(By.ID, "seed").send_keys("1")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: "种子" in d.find_element(By.ID, "status").text)
        lines = browser.find_element(By.ID, "lyrics").text.strip().splitlines()
        assert len(lines) == 3 and all(len(line) <= 6 for line in lines), lines
        assert any(len(line) == 6 for line in lines), lines  # (the tiny model's lines run on: they are cut at 6)
        width.clear()  # left empty: the server's default (it was 64, over this server's limit: a 422)
        old = browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text != old and "种子" in d.find_element(By.ID, "status").text)
        assert not browser.find_element(By.ID, "error").is_displayed()
        copy = browser.find_element(By.ID, "copy")
        copy.click()
        copy.click()  # twice within the 1.5 s of "已复制 ✓": the label still comes back (waited for: the clipboard's
        WebDriverWait(browser, 10).until(lambda d: copy.text.startswith("复制"))  # answer starts the 1.5 s, late when loaded)


def test_page_double_click_legend_and_keyboard_checks(tiny_ckpt, browser):
    """A double click writes (its second click was a Stop, so nothing came); the surprisal legend shows only under a
    tinted text (a class's display undid its hidden attribute); Ctrl+Enter goes through the form's checks."""
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with serve.running(serve.create_app(tiny_ckpt)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        legend = browser.find_element(By.ID, "legend")
        assert not legend.is_displayed()  # nothing written yet
        ActionChains(browser).double_click(browser.find_element(By.ID, "generate")).perform()
        wait.until(lambda d: "种子" in d.find_element(By.ID, "status").text)
        assert "已停止" not in browser.find_element(By.ID, "status").text
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lyrics .s") and legend.is_displayed())  # tinted: its legend
        assert "困惑度" in legend.text
        status = browser.find_element(By.ID, "status").text
        tint = browser.find_element(By.ID, "tint")  # the tint follows its box, for the text already shown
        tint.click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#lyrics .s") and not legend.is_displayed())
        tint.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lyrics .s") and legend.is_displayed())
        reuse = browser.find_element(By.ID, "reuse-seed")  # the text's seed can be reused, from the keyboard too
        assert reuse.is_displayed() and "种子" in reuse.text
        reuse.send_keys(Keys.ENTER)
        assert browser.find_element(By.ID, "seed").get_attribute("value") == status.split("种子 ")[1].split()[0]
        browser.find_element(By.ID, "seed").clear()
        lines = browser.find_element(By.ID, "lines")
        lines.clear()
        lines.send_keys("0")
        browser.find_element(By.ID, "prefix").send_keys(Keys.CONTROL, Keys.ENTER)  # refused by the form: nothing is sent
        time.sleep(1.0)
        assert browser.find_element(By.ID, "status").text == status and "busy" not in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
        lines.clear()
        lines.send_keys("2")
        browser.find_element(By.ID, "prefix").send_keys(Keys.CONTROL, Keys.ENTER)  # the same keys write once the form is valid
        wait.until(lambda d: d.find_element(By.ID, "status").text not in (status, "正在写…") and "busy" not in d.find_element(By.TAG_NAME, "body").get_attribute("class"))
        assert len(browser.find_element(By.ID, "lyrics").text.strip().splitlines()) == 2
        status = browser.find_element(By.ID, "status").text
        assert browser.find_element(By.ID, "seed").get_attribute("max") == "4294967295"  # the seeds that write different texts
        # 藏头: a line per character, each starting with it; the prefix and the line count step aside
        acrostic = browser.find_element(By.ID, "acrostic")
        acrostic.send_keys("我你爱")
        assert not browser.find_element(By.ID, "prefix").is_enabled() and not lines.is_enabled()
        acrostic.send_keys(Keys.ENTER)
        wait.until(lambda d: "种子" in d.find_element(By.ID, "status").text and d.find_element(By.ID, "status").text != status)
        got = browser.find_element(By.ID, "lyrics").text.strip().splitlines()
        assert [line[0] for line in got] == ["我", "你", "爱"], got
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        # While a new text is on its way, the old text's seed is not offered; stopped before it came, it is again.
        reuse = browser.find_element(By.ID, "reuse-seed")
        assert reuse.is_displayed()
        browser.execute_script("window.fetch = (url, opts) => new Promise((_, reject) => opts.signal.addEventListener("
                               "'abort', () => reject(new DOMException('stopped', 'AbortError'))));")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: not reuse.is_displayed())
        time.sleep(0.5)  # (a Stop within 400 ms of the start is taken for a double click)
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: reuse.is_displayed() and "busy" not in d.find_element(By.TAG_NAME, "body").get_attribute("class"))


def test_the_page_speaks_english_for_a_model_of_english(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from .conftest import train_tiny

    corpus = tmp_path / "play.txt"
    corpus.write_text("ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me.\n" * 30, encoding="utf-8")
    train_tiny(tmp_path, data=str(corpus), prefixes=("ROMEO:",), epochs=1)
    with serve.running(serve.create_app(tmp_path / "run" / "best")) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        assert browser.title == "Write · charlm" and browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert "parameters" in browser.find_element(By.ID, "model-info").text
        assert browser.find_element(By.ID, "prefix").get_attribute("value") == "ROMEO:"
        assert browser.find_element(By.ID, "generate").text == "Generate"  # no Chinese, no doubled gloss
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: "seed" in d.find_element(By.ID, "status").text)
        status = browser.find_element(By.ID, "status").text
        assert "characters" in status and "字" not in status
        lyrics = browser.find_element(By.ID, "lyrics")
        assert lyrics.text.startswith("ROMEO:") and lyrics.value_of_css_property("text-align") in ("left", "start")
        browser.find_element(By.ID, "acrostic").send_keys("RJ", Keys.ENTER)  # an acrostic of letters
        wait.until(lambda d: d.find_element(By.ID, "status").text != status and "busy" not in d.find_element(By.TAG_NAME, "body").get_attribute("class"))
        assert [line[0] for line in browser.find_element(By.ID, "lyrics").text.strip().splitlines()] == ["R", "J"]
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_page_tints_the_lines_of_a_model_trained_with_newlines_as_spaces(browser, tmp_path):
    """The server reads a line break as such a model reads it, a space: the page still tints what it wrote (it showed
    the plain text, its legend hidden, as the scored text was not the written one)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .conftest import train_tiny

    train_tiny(tmp_path, epochs=1, newlines="space")
    with serve.running(serve.create_app(tmp_path / "run" / "best")) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        # its acrostic field is hidden and its box out of the form: a value the browser put back in it (a punctuation
        # mark: invalid) neither stops the form unseen nor is sent
        acrostic = browser.find_element(By.ID, "acrostic")
        browser.execute_script("arguments[0].value = '，'; arguments[0].dispatchEvent(new Event('input'))", acrostic)
        assert not acrostic.is_displayed() and not acrostic.is_enabled() and browser.find_element(By.ID, "prefix").is_enabled()
        assert browser.execute_script("return document.querySelector('form').checkValidity()")
        browser.find_element(By.ID, "generate").click()  # (the page asks for lines: they end in line breaks)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lyrics .s") and d.find_element(By.ID, "legend").is_displayed())
        assert len(browser.find_elements(By.CSS_SELECTOR, "#lyrics p")) > 1  # lines, each tinted
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_page_limits_count_characters_as_the_server_does(tiny_ckpt, browser):
    """maxlength counts UTF-16 units, so 𠀀 or an emoji counted twice: the page counts code points (an acrostic's heads
    as a reader sees them), as the server does, and says when a box holds too many."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve.running(serve.create_app(tiny_ckpt, max_prefix=10, max_lines=3)) as url:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        valid = "return [arguments[0].checkValidity(), arguments[0].validationMessage, arguments[0].value];"
        prefix, acrostic = browser.find_element(By.ID, "prefix"), browser.find_element(By.ID, "acrostic")
        prefix.clear()
        prefix.send_keys("分开" + "😀" * 8)  # 10 characters, 18 UTF-16 units
        assert browser.execute_script(valid, prefix)[::2] == [True, "分开" + "😀" * 8]
        prefix.send_keys("😀")
        ok, message, _ = browser.execute_script(valid, prefix)
        assert not ok and message == "最多 10 个字"
        browser.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'))", prefix)
        acrostic.send_keys("，")  # punctuation alone heads no line: refused, as the server refuses it (the prefix stays)
        assert browser.execute_script(valid, acrostic)[:2] == [False, "标点和空格不能做行头：请写上字"] and prefix.is_enabled()
        browser.execute_script("arguments[0].value = '  '; arguments[0].dispatchEvent(new Event('input'))", acrostic)
        assert browser.execute_script(valid, acrostic)[0] and prefix.is_enabled()  # blank: no acrostic
        browser.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'))", acrostic)
        # counted as sampling.acrostic_heads(acrostic_letters(...)) counts: what is left joined, then split (one flag)
        assert browser.execute_script("return ['🇺，🇸', '春，\u0301夏', '#\ufe0f\u20e3 春'].map(heads)") == [1, 3, 2]
        acrostic.send_keys("👨\u200d👩\u200d👧 分，开。")  # three heads, the first of five code points: spaces and punctuation head none
        assert browser.execute_script(valid, acrostic)[0] and not prefix.is_enabled()
        acrostic.send_keys("快")
        assert browser.execute_script(valid, acrostic)[:2] == [False, "最多 3 个字"]


def test_page_status_and_errors_while_writing_and_after(tiny_ckpt, browser):
    """The old text's copy-check tooltip is not the new text's (and is back if that one is stopped before it comes); a
    cut by a shutdown is said in the page's words; the server's errors are read in English, the page's own not."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve.running(serve.create_app(tiny_ckpt)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        status, error, button = (browser.find_element(By.ID, i) for i in ("status", "error", "generate"))
        busy = lambda d: "busy" in d.find_element(By.TAG_NAME, "body").get_attribute("class")  # noqa: E731
        browser.execute_script("arguments[0].title = 'old copy check';"
                               "window.realFetch = window.fetch; window.stream = null;"
                               "window.fetch = (url, opts) => url !== '/v1/generate/stream' ? window.realFetch(url, opts) : window.stream(opts);"
                               "window.stream = (opts) => new Promise((_, reject) => opts.signal.addEventListener("
                               "'abort', () => reject(new DOMException('stopped', 'AbortError'))));", status)
        button.click()
        wait.until(busy)
        assert status.get_attribute("title") == ""  # while the new text is on its way
        time.sleep(0.5)  # (a Stop within 400 ms of the start is taken for a double click)
        button.click()
        wait.until(lambda d: not busy(d))
        assert status.get_attribute("title") == "old copy check"  # nothing came: the old text's, back
        sse = ('event: chunk\ndata: {"samples": ["分开了"], "seed": 7}\n\n'
               'event: done\ndata: {"samples": ["分开了"], "chars": 1, "elapsed_s": 0.1, "seed": 7, "finish_reason": "shutdown"}\n\n')
        browser.execute_script("window.stream = () => Promise.resolve(new Response(arguments[0], "
                               "{status: 200, headers: {'Content-Type': 'text/event-stream'}}));", sse)
        button.click()
        wait.until(lambda d: "种子 7" in status.text)
        assert status.text.endswith("（服务器关闭了，截断了）"), status.text
        browser.execute_script("window.stream = () => Promise.resolve(new Response(JSON.stringify({error: 'prefix: too odd'}), "
                               "{status: 422, headers: {'Content-Type': 'application/json'}}));")
        button.click()
        wait.until(lambda d: error.is_displayed() and not busy(d))
        assert error.text == "prefix: too odd" and error.get_attribute("lang") == "en"  # the server's English
        browser.execute_script("window.stream = () => Promise.reject(new TypeError('Failed to fetch'));")
        button.click()
        wait.until(lambda d: error.text != "prefix: too odd" and error.is_displayed() and not busy(d))
        assert "服务器" in error.text and not browser.execute_script("return arguments[0].hasAttribute('lang')", error)  # the page's own Chinese



def test_page_on_small_screens_errors_in_view_and_the_tint_told(tiny_ckpt, browser):
    """In a window shorter than the controls the button stays in view; on a phone a refused request's error is
    scrolled to; a text too long to tint says so, a tint turned off while scoring stays off, and a form the browser
    refuses clears the last request's error."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    in_view = "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight;"
    with serve.running(serve.create_app(tiny_ckpt, max_text=30)) as url:
        browser.set_window_size(1366, 650)  # a laptop's window, shorter than the controls
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "LSTM" in d.find_element(By.ID, "model-info").text)
        button, status, error = (browser.find_element(By.ID, i) for i in ("generate", "status", "error"))
        assert browser.execute_script(in_view, button)
        browser.find_element(By.ID, "seed").send_keys("3")  # (further down the controls than the window reaches)
        button.click()
        wait.until(lambda d: "种子 3" in status.text)  # 8 lines: more than this server's 30 characters to score
        wait.until(lambda d: "没有着色" in status.text)
        assert "30" in status.text and not browser.find_elements(By.CSS_SELECTOR, "#lyrics .s")
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        assert browser.execute_script(in_view, button)  # the controls scroll by themselves: the button is there

        lines = browser.find_element(By.ID, "lines")  # a short text, its scoring held back until the tint is off
        lines.clear()
        lines.send_keys("1")
        browser.find_element(By.ID, "max-line-length").clear()
        browser.find_element(By.ID, "max-line-length").send_keys("5")
        browser.execute_script("window.realFetch = window.fetch; window.fetch = (u, o) => u !== '/v1/score' ? window.realFetch(u, o)"
                               " : new Promise((ok) => { window.release = () => ok(window.realFetch(u, o).then(async (r) => {"
                               " const body = await r.clone().json(); window.scored = body.perplexity !== undefined; return r; })); });")
        old = status.text
        button.click()
        wait.until(lambda d: d.find_element(By.ID, "status").text not in (old, "正在写…") and d.execute_script("return !!window.release"))
        browser.find_element(By.ID, "tint").click()  # off, while the score is on its way
        browser.execute_script("window.release()")
        wait.until(lambda d: d.execute_script("return window.scored === true"))  # the score came (tint() reads it next)
        time.sleep(0.5)
        assert not browser.find_elements(By.CSS_SELECTOR, "#lyrics .s") and not browser.find_element(By.ID, "legend").is_displayed()

        browser.set_window_size(375, 740)  # a phone: the text and its errors are below the controls
        browser.execute_script("window.scrollTo(0, 0)")
        prefix = browser.find_element(By.ID, "prefix")
        prefix.clear()
        prefix.send_keys("分开☃")  # not in the vocabulary: the server's 422
        button.click()
        wait.until(lambda d: error.is_displayed() and "☃" in error.text)
        wait.until(lambda d: d.execute_script(in_view, error))
        prefix.clear()
        lines.clear()
        lines.send_keys("0")  # refused by the browser, with its own message: the old error would blame the prefix
        button.click()
        wait.until(lambda d: not error.is_displayed())

def test_inspect_page_ink_stands_out_and_escape_hides_the_tip(tiny_ckpt, browser, tmp_path):
    """The text coloured by a gate or a cell's state is written in white or black, whichever reads at 4.5:1 or
    more on each colour; Escape hides the hover tip."""
    import re

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from charlm.cli import main

    page = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), "--text", "分开的时候我说不分开\n你说我们还会再见\n", "--out", str(page)]) == 0
    browser.get(page.as_uri())

    def luminance(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    read = ("return [...document.querySelectorAll('#text [data-k]')].map(el => "
            "[getComputedStyle(el).color, getComputedStyle(el).backgroundColor]);")
    values = browser.execute_script("return [...document.querySelectorAll('#colour-by option')].map(o => o.value)"
                                    ".filter(v => v !== 'surprisal');")
    assert any(v.startswith("cell:") for v in values) and len(values) > 2
    for value in values[:2] + [v for v in values if v.startswith("cell:")][:2]:
        browser.execute_script("var s = document.getElementById('colour-by'); s.value = arguments[0];"
                               "s.dispatchEvent(new Event('change'));", value)
        for ink, bg in browser.execute_script(read):
            ink, bg = (tuple(map(int, re.findall(r"\d+", c)[:3])) for c in (ink, bg))
            assert ink in ((0, 0, 0), (255, 255, 255)), (value, ink, bg)
            lo, hi = sorted((luminance(ink), luminance(bg)))
            assert (hi + 0.05) / (lo + 0.05) >= 4.5, (value, ink, bg)
    tip = browser.find_element(By.ID, "tip")
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, "#text [data-k]")).perform()
    assert tip.is_displayed()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert not tip.is_displayed()


def test_inspect_page_by_keyboard_and_in_a_dark_scheme(tiny_ckpt, browser, tmp_path):
    """The inspected text is one Tab stop; the arrow keys, Home and End move from character to character, each showing
    its tip (the screen reader's description of it). Under a dark colour scheme the page is dark, and the ink on the
    most surprising character's tint still reads at 4.5:1, as it does on the light page."""
    import re

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from charlm.cli import main

    page = tmp_path / "r.html"
    assert main(["inspect", str(tiny_ckpt), "--text", "分开的时候我说不分开\n你说我们还会再见\n", "--out", str(page)]) == 0
    browser.get(page.as_uri())
    tip = browser.find_element(By.ID, "tip")
    chars = browser.find_elements(By.CSS_SELECTOR, "#text [data-k]")
    active = "return document.activeElement"
    browser.find_element(By.ID, "colour-by").click()
    ActionChains(browser).send_keys(Keys.ESCAPE, Keys.TAB).perform()
    assert browser.execute_script(active) == chars[0] and tip.is_displayed() and "#1" in tip.text
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).perform()
    assert browser.execute_script(active) == chars[2] and tip.text.startswith("“的”  #3") and "surprisal" in tip.text
    assert chars[2].get_attribute("aria-describedby") == "tip"
    ActionChains(browser).send_keys(Keys.END).perform()
    assert browser.execute_script(active) == chars[-1] and f"#{len(chars)}" in tip.text
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()  # the end stays the end
    assert browser.execute_script(active) == chars[-1]
    ActionChains(browser).send_keys(Keys.TAB).perform()  # one stop: Tab leaves the text
    assert browser.execute_script("return document.getElementById('text').contains(document.activeElement)") is False
    assert not tip.is_displayed()
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()  # back to the character it left
    assert browser.execute_script(active) == chars[-1]
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseleave'))", chars[1])  # the pointer, as the page scrolls
    assert tip.is_displayed() and f"#{len(chars)}" in tip.text  # the tip of the character the keys are on stays
    ActionChains(browser).move_to_element(chars[3]).click().move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    assert browser.execute_script(active) == chars[3] and not tip.is_displayed()  # a click's focus keeps no tip
    button = browser.find_element(By.CSS_SELECTOR, "button.show")
    browser.execute_script("arguments[0].scrollIntoView()", button)
    button.click()
    assert browser.execute_script("return document.activeElement.id") == "colour-by"  # the focus went with the view
    browser.execute_script("var s = document.getElementById('colour-by'); s.value = 'surprisal'; s.dispatchEvent(new Event('change'));")

    def rgba(css):
        v = [float(x) for x in re.findall(r"[\d.]+", css)]
        return v[:3], (v[3] if len(v) > 3 else 1.0)

    def luminance(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    most = ("var el = document.querySelector('#text [data-k]'); el.style.setProperty('--s', '1');"
            "return [getComputedStyle(el).color, getComputedStyle(el).backgroundColor,"
            " getComputedStyle(document.getElementById('text-card')).backgroundColor]")
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        ink, tint, card = browser.execute_script(most)
        (ink, _), (tint, alpha), (card, _) = rgba(ink), rgba(tint), rgba(card)
        assert 0.4 < alpha < 1, (scheme, alpha)
        seen = [alpha * t + (1 - alpha) * c for t, c in zip(tint, card)]
        lo, hi = sorted((luminance(ink), luminance(seen)))
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, (scheme, ink, seen)
        assert (luminance(card) < 0.05) == (scheme == "dark"), (scheme, card)
