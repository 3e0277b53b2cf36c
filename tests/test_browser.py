"""The chat UI in a real browser: headless Chromium driven by Playwright against `ragbot chat`.

Asks about the shipped corpus, waits for the streamed answer and its sources, clicks thumbs-up
and reads the feedback row from the database; then uploads a document and asks about it.
Screenshots go to test-artifacts/. Skipped (with the reason) where Chromium is not installed;
.ci/run installs it.
"""

import os
import re
import shutil
import time

import pytest

from ragbot import RagBot

from conftest import ARTIFACTS, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# CI sets RAGBOT_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping.
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("RAGBOT_REQUIRE_BROWSER"),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


# Every text Gradio's screen-reader status region is given (it clears it again after a second).
RECORD_ANNOUNCEMENTS = """
window.ragbotAnnounced = [];
new MutationObserver(records => {
  for (const r of records) {
    const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const region = node && node.closest('[role=status][aria-live]');
    const said = region && region.textContent.trim();
    if (said) window.ragbotAnnounced.push(said);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_ask_vote_and_upload_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, data_dir = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.add_init_script(RECORD_ANNOUNCEMENTS)
        page.goto(url)
        page.fill("#question textarea", "When were GANs introduced and by whom?")
        page.click("#ask")
        expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=180_000)
        expect(page.locator("#sources")).to_contain_text("gans.md")
        answer_text = page.locator("#chat .message.bot").last.inner_text()
        assert "Goodfellow" in answer_text and "[1]" in answer_text
        # The sentence quoted is marked in its passage, and drawn so: it is read where it stands.
        quote = page.locator("#sources .ragbot-source mark.ragbot-quote").first
        expect(quote).to_contain_text("Goodfellow")
        assert quote.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 230, 138)"
        # A screen reader hears the answer as text, not the citation links' tags.
        label = page.locator('#chat [aria-label^="bot\'s message"]').last
        expect(label).to_have_attribute("aria-label", re.compile(r"Goodfellow.*\[1\]"))
        assert "<" not in label.get_attribute("aria-label")
        # Every button of the chat says what it does (Gradio's share button, which posts to
        # Hugging Face Spaces, had no label and did nothing here: it is not shown).
        unnamed = [b.evaluate("e => e.outerHTML")[:120] for b in page.locator("#chat button").all()
                   if not (b.get_attribute("aria-label") or b.get_attribute("title") or b.inner_text().strip())]
        assert not unnamed, unnamed
        # Gradio's status region announces a finished event in words, not as its missing key.
        page.wait_for_function("window.ragbotAnnounced.includes('Done')", timeout=30_000)
        assert not [said for said in page.evaluate("window.ragbotAnnounced") if "common." in said]
        page.screenshot(path=str(ARTIFACTS / "chat-answer.png"))
        # Bold text (the passage's heading, the [n]) is drawn with the page font's own bold face:
        # with only its 400 and 600 faces declared, some glyphs ("A") came from another font.
        page.wait_for_function("() => [...document.fonts].some(f => f.family.includes('Source Sans Pro') "
                               "&& f.weight === '700' && f.status === 'loaded')", timeout=10_000)

        page.locator('#chat button[aria-label="Like"]').last.click()
        expect(page.locator("#status")).to_contain_text("marked helpful", timeout=30_000)

        bot = RagBot.open(data_dir)
        row = bot.store._db.execute(
            "SELECT a.question, f.vote FROM feedback f JOIN answers a ON a.id = f.answer_id "
            "ORDER BY f.updated_at DESC LIMIT 1").fetchone()
        assert row == ("When were GANs introduced and by whom?", 1)
        # "Show all retrieved passages" redraws the panel at once, for the answer it shows.
        shown = page.locator("#sources .ragbot-source")
        cited_only = shown.count()
        retrieved = bot.store._db.execute(
            "SELECT COUNT(*) FROM answer_passages WHERE answer_id = (SELECT answer_id FROM feedback "
            "ORDER BY updated_at DESC LIMIT 1)").fetchone()[0]
        assert 0 < cited_only < retrieved
        page.get_by_text("Settings", exact=True).first.click()
        page.locator("#show-all input[type=checkbox]").check()
        expect(shown).to_have_count(retrieved, timeout=30_000)
        # Each passage's header stands with its own passage: more space above the header than
        # between it and the passage (Gradio's blockquote margin had it the other way round).
        above, below = shown.first.evaluate(
            "e => [e.nextElementSibling.getBoundingClientRect().top - e.querySelector('blockquote')"
            ".getBoundingClientRect().bottom, parseFloat(getComputedStyle(e.nextElementSibling"
            ".querySelector('blockquote')).marginTop)]")
        assert above > below, (above, below)

        # Another tab, open before the upload, with its library drawn.
        other_tab = browser.new_page(viewport={"width": 1300, "height": 900})
        other_tab.goto(url)
        other_tab.get_by_text("Your documents", exact=True).click()
        expect(other_tab.locator("#documents")).to_contain_text("gans.md", timeout=30_000)
        # Scrolled to its end, the last row's date is not under the table's "back to the top"
        # button (it was, half covered).
        other_table = other_tab.locator("#documents .virtual-table-viewport")
        assert other_table.evaluate("el => el.scrollHeight > el.clientHeight"), "the corpus's library should scroll"
        other_table.evaluate("el => el.scrollTop = el.scrollHeight")
        to_top = other_tab.locator("#documents .scroll-top-button")
        expect(to_top).to_be_visible(timeout=10_000)
        other_tab.wait_for_timeout(300)  # the virtual rows are drawn for the new position
        boxes = other_tab.evaluate("""() => {
            const rows = [...document.querySelectorAll('#documents .virtual-row')];
            const last = rows.reduce((a, b) => b.getBoundingClientRect().bottom > a.getBoundingClientRect().bottom ? b : a);
            const date = [...last.querySelectorAll('span.text')].pop().getBoundingClientRect();
            const button = document.querySelector('#documents .scroll-top-button').getBoundingClientRect();
            return [date.top, date.right, date.bottom, date.left, button.top, button.right, button.bottom, button.left]; }""")
        top, right, bottom, left, b_top, b_right, b_bottom, b_left = boxes
        assert bottom <= b_top or top >= b_bottom or right <= b_left or left >= b_right, boxes
        other_tab.get_by_text("Your documents", exact=True).click()  # closed again

        doc = tmp_path / "zorblat.md"
        doc.write_text("# The Zorblat Engine\n\nThe Zorblat engine was invented in 1931 by Mira Quell "
                       "to pump water from deep mines.\n")
        # With documents stored, "Add documents" starts closed (the sources stay in view).
        expect(page.locator("#upload")).to_be_hidden()
        page.get_by_text("Add documents", exact=True).click()
        expect(page.locator("#upload")).to_be_visible()
        page.set_input_files("#upload input[type=file]", str(doc))
        expect(page.locator("#upload-status textarea")).to_have_value(re.compile("added 1"), timeout=120_000)
        # It becomes the chosen document in the library (which lists by name: it may sort out of view).
        page.get_by_text("Your documents", exact=True).click()
        expect(page.locator("#document-choice input")).to_have_value(re.compile(r"^zorblat\.md \(upload"),
                                                                     timeout=30_000)
        # The other tab's library, opened again, lists it (it showed only after a reload).
        other_tab.get_by_text("Your documents", exact=True).click()
        expect(other_tab.locator("#documents")).to_contain_text("zorblat.md", timeout=30_000)
        other_tab.close()
        page.fill("#question textarea", "Who invented the Zorblat engine?")
        page.click("#ask")
        expect(page.locator("#sources .ragbot-source").first).to_contain_text("zorblat.md", timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "chat-upload.png"))
        # The chat's toolbar (clear, copy all) stands above the messages, not over them: Gradio
        # floated it over the top right corner, where a scrolled question's bubble went under it.
        toolbar, messages = (page.locator(f"#chat {c}").first.bounding_box() for c in (".top-panel", ".bubble-wrap"))
        assert toolbar["height"] > 0 and toolbar["y"] + toolbar["height"] <= messages["y"] + 0.5, (toolbar, messages)

        # Another file of the same name is kept under a distinct name; the first stays as it was.
        other = tmp_path / "second" / "zorblat.md"
        other.parent.mkdir()
        other.write_text("# Zorblat, later\n\nA second Zorblat engine was built in 1950 in Leeds.\n")
        # The file dialog offers only what ragbot reads; a file of another type chosen with it is
        # named on the page and not sent, and the readable one still is.
        accept = page.locator("#upload input[type=file]").get_attribute("accept") or ""
        assert {".pdf", ".md", ".txt", ".html"} <= {s.strip() for s in accept.split(",")}, accept
        notes = tmp_path / "second" / "notes.xyz"
        notes.write_text("not a kind ragbot reads")
        page.set_input_files("#upload input[type=file]", str(notes))  # the box emptied itself
        expect(page.get_by_text(re.compile(r"Invalid file type: notes\.xyz"))).to_be_visible(timeout=30_000)
        # The notice names it; the box is left ready for the next file (a red "Error" covered it).
        expect(page.locator("#upload button.upload-container")).to_be_visible()
        expect(page.locator("#upload .error")).to_be_hidden()
        tool = tmp_path / "second" / "tool.exe"
        tool.write_bytes(b"MZ\x90\x00")
        page.set_input_files("#upload input[type=file]", [str(other), str(tool)])
        expect(page.get_by_text(re.compile(r"Invalid file type: tool\.exe"))).to_be_visible(timeout=30_000)
        expect(page.locator("#upload-status textarea")).to_have_value(re.compile(r"added: zorblat-[0-9a-f]{8}\.md"),
                                                                      timeout=120_000)
        # Not sent: the ingest never saw it (the old page sent it, and the status said it failed).
        assert "tool.exe" not in page.locator("#upload-status textarea").input_value()
        assert not any(p.name.startswith(("tool", "notes")) for p in (data_dir / "uploads").iterdir())
        # The settings are this browser's: show-all is still on after a reload.
        page.reload()
        page.get_by_text("Settings", exact=True).first.click()
        expect(page.locator("#show-all input[type=checkbox]")).to_be_checked(timeout=30_000)
        # Side by side, the conversations stand on the left; in the page (what a keyboard and a
        # screen reader follow) and on a phone's width they come after the chat and its sources.
        left = {c: page.locator(c).bounding_box()["x"] for c in ("#conversations", "#chat", "#sources")}
        assert left["#conversations"] < left["#chat"] < left["#sources"], left
        assert page.evaluate("() => [...document.querySelectorAll('#chat, #sources, #conversations')].map(e => e.id)"
                             ) == ["chat", "sources", "conversations"]
        # On a phone's width the chat and its question box come first, within the first screen,
        # then the sources, then the conversations (listed first, they pushed the chat down).
        page.set_viewport_size({"width": 390, "height": 844})
        top, bottom = ({c: page.locator(c).evaluate(f"e => e.getBoundingClientRect().{edge} + window.scrollY")
                        for c in ("#chat", "#question", "#sources", "#conversations")} for edge in ("top", "bottom"))
        assert top["#chat"] < top["#question"] < top["#sources"] < top["#conversations"], top
        assert bottom["#question"] <= 844, bottom
        browser.close()
    assert "Mira Quell" in (data_dir / "uploads" / "zorblat.md").read_text()
    assert any(d.source.endswith("uploads/zorblat.md") for d in bot.store.documents())
    bot.close()


HOSTILE_DOC = """# The Quell Pump

The Quell pump moves water <img src="http://127.0.0.2:8/track.png"> out of deep mines using <b>two</b> pistons.

It was first built in <script>fetch('http://127.0.0.2:8/leak')</script>1931 by Mira Quell.
"""


def _above(page, upper: str, lower: str) -> bool:
    """Whether `upper` begins above `lower` on the page. Both are measured in one step: the page
    scrolls the question into view meanwhile, and two measurements apart could straddle the
    scroll (with a title long enough to push the question down the page, they did)."""
    return page.evaluate("([a, b]) => document.querySelector(a).getBoundingClientRect().top"
                         " < document.querySelector(b).getBoundingClientRect().top", [upper, lower])


def test_hostile_documents_and_questions_are_shown_as_text_and_fetch_nothing(make_bot, tmp_path):
    """A document and a question carrying HTML that points at another host: the page shows the
    characters, and the browser asks no origin but the app's own for anything (every request is
    routed through Playwright; the hostile ones point at 127.0.0.2/.3, never a real address)."""
    from playwright.sync_api import expect, sync_playwright

    from conftest import running_chat

    docs = tmp_path / "hostile"
    docs.mkdir()
    # A text file: its tags are its text, to be shown as such (a Markdown file's HTML is read as
    # HTML since a1c0480, so its tags never reach the page; test_readers.py covers that).
    (docs / "quell.txt").write_text(HOSTILE_DOC)
    hostile_name = "<img src=x onerror=alert(1)>.md"  # a file name is the user's text too
    (docs / hostile_name).write_text("# Pumps\n\nA pump moves water from one place to another.\n")
    # A contents page's dot leaders: a run without spaces, which ran past the sources column (helper-60).
    (docs / "contents.txt").write_text("Contents\nThe Quell pump, first built" + "." * 300 + "3\n")
    bot = make_bot(default_corpus=None)
    assert bot.ingest([docs]).ok
    bot.close()
    foreign: list[str] = []
    with running_chat(bot.settings.data_dir, "--no-default-corpus") as url, sync_playwright() as p:
        origin = url.rstrip("/")
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})

        def gatekeeper(route):
            if route.request.url.startswith(origin):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", gatekeeper)
        page.goto(url)
        page.fill("#question textarea", 'How does the Quell pump move water? <img src="http://127.0.0.3:8/q.png">')
        page.click("#ask")
        expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=120_000)
        answer = page.locator("#chat .message.bot").last
        expect(answer).to_contain_text('<img src="http://127.0.0.2:8/track.png">')
        expect(page.locator("#chat .message.user").last).to_contain_text('<img src="http://127.0.0.3:8/q.png">')
        assert page.locator("#chat img[src*='127.0.0.2'], #chat img[src*='127.0.0.3']").count() == 0
        assert page.locator("#chat b, #chat script").count() == 0
        # A screen reader hears the question's characters, not their escapes or a tag.
        expect(page.locator('#chat [aria-label^="user\'s message"]').last).to_have_attribute(
            "aria-label", 'user\'s message: How does the Quell pump move water? <img src="http://127.0.0.3:8/q.png">')
        # The sources panel shows the passage, script tag and all, as text.
        page.get_by_text("Settings", exact=True).first.click()
        page.locator("#show-all input[type=checkbox]").check()
        page.fill("#question textarea", "When was the Quell pump first built?")
        page.click("#ask")
        expect(page.locator("#sources")).to_contain_text("<script>fetch('http://127.0.0.2:8/leak')</script>",
                                                         timeout=120_000)
        assert page.locator("#sources script, #sources img").count() == 0
        assert page.locator("#sources b", has_text="two").count() == 0  # the page's own <b> marks only [n]
        # Every passage, the dot leaders' included, wraps within its column.
        expect(page.locator("#sources .ragbot-passage", has_text="." * 60).first).to_be_visible()
        wider = page.locator("#sources .ragbot-passage").evaluate_all(
            "quotes => quotes.filter(q => q.scrollWidth > q.clientWidth + 1).map(q => q.textContent.slice(0, 40))")
        assert wider == [], wider
        # A notice (Gradio renders its message as HTML) names a chosen document as text.
        page.get_by_text("Your documents", exact=True).click()
        page.locator("#search-in input").click()
        page.locator("#search-in").get_by_role("option", name=re.compile("onerror")).click()
        page.keyboard.press("Escape")
        page.fill("#question textarea", "What is the capital of Peru?")
        page.click("#ask")
        toast = page.locator("[data-testid='toast-body']")
        expect(toast).to_contain_text(f"Searched only the document chosen under “Your documents”: {hostile_name}.",
                                      timeout=120_000)
        assert toast.locator("img").count() == 0 and page.locator("#sources img").count() == 0
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "chat-hostile.png"))
        browser.close()
    assert foreign == []


def test_conversations_survive_a_reload_and_a_restart_and_stay_private(make_bot, tmp_path):
    """The open conversation comes back after a reload and a server restart (same address: the
    browser keeps its token and the conversation's id in local storage); it is listed, renamed,
    exported and deleted; another browser sees none of it."""
    from playwright.sync_api import expect, sync_playwright

    from conftest import _free_port, running_chat

    bot = make_bot()
    bot.ingest([ROOT / "corpus" / "gans.md"])
    data_dir = bot.settings.data_dir
    port = _free_port()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        with running_chat(data_dir, port=port) as url:
            page.goto(url)
            # A first visit suggests questions made from the documents; a click asks one (it only
            # filled the box, and a newcomer waited for an answer), and the suggestions go.
            expect(page.locator("#examples")).to_contain_text("?", timeout=60_000)
            expect(page.locator("#conversations")).to_contain_text("None yet in this browser")
            # Each group of choices is named for a screen reader (Gradio labels it with a span).
            expect(page.get_by_role("group", name="New here? Click a question")).to_be_visible()
            expect(page.get_by_role("group", name="Conversations", exact=True)).to_be_attached()
            suggestion = page.locator("#examples label").first
            suggested = suggestion.inner_text().strip()
            page.fill("#question textarea", "a draft of mine")
            suggestion.click()
            expect(page.locator("#examples")).to_be_hidden(timeout=30_000)
            expect(page.locator("#chat .message.user").first).to_have_text(suggested, timeout=30_000)
            expect(page.locator("#chat .message.bot")).to_have_count(1, timeout=180_000)
            expect(page.locator("#question textarea")).to_have_value("a draft of mine")  # what was typed stays
            expect(page.locator("#conversations")).to_contain_text(suggested[:40], timeout=30_000)  # titled by it
            expect(page.locator("#conversations")).not_to_contain_text("None yet")  # the empty list's note went
            page.get_by_role("button", name="New conversation").click()
            expect(page.locator("#chat .message")).to_have_count(0, timeout=30_000)
            # A new conversation suggests questions again (they went when the first was asked);
            # asking one's own question makes them go.
            expect(page.get_by_role("group", name="Click a question about your documents to ask it, or type")
                   ).to_be_visible(timeout=30_000)
            expect(page.locator("#examples label").first).to_contain_text("?")
            page.fill("#question textarea", "When were GANs introduced?")
            page.click("#ask")
            expect(page.locator("#examples")).to_be_hidden(timeout=30_000)
            expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=180_000)
            expect(page.locator("#conversations")).to_contain_text("When were GANs introduced?", timeout=30_000)
            page.reload()
            expect(page.locator("#chat .message.bot").last).to_contain_text("2014", timeout=60_000)
            # A reload of a New conversation not yet asked in shows its suggestions again, as a
            # first visit does (helper-79's drive: a reload took them away).
            page.get_by_role("button", name="New conversation").click()
            expect(page.locator("#chat .message")).to_have_count(0, timeout=30_000)
            page.reload()
            expect(page.get_by_role("group", name="Click a question about your documents to ask it, or type")
                   ).to_be_visible(timeout=30_000)
            expect(page.locator("#chat .message")).to_have_count(0)
            page.locator("#conversations label").filter(has_text="When were GANs introduced?").click()  # back to it
            expect(page.locator("#chat .message.bot").last).to_contain_text("2014", timeout=60_000)
            expect(page.locator("#examples")).to_be_hidden(timeout=30_000)
            # Closed before its server stops: Gradio's page, having lost its server, reconnects
            # every 2 s and reloads itself once it can, racing any reload of ours (CI aborted it
            # twice: ERR_ABORTED on 2026-12-02, "Not attached to an active page" on 2026-12-04).
            # So what is tested is a visit after the restart, not an open tab recovering by itself.
            page.close()
        with running_chat(data_dir, port=port) as url:  # a new server process, the same database
            page = context.new_page()  # the same browser profile: its local storage is kept
            page.goto(url)
            expect(page.locator("#chat .message.bot").last).to_contain_text("2014", timeout=60_000)
            expect(page.locator("#conversations")).to_contain_text("When were GANs introduced?")
            page.locator('#chat button[aria-label="Like"]').last.click()  # reopened answers can be voted on
            expect(page.locator("#status")).to_contain_text("marked helpful", timeout=30_000)

            page.get_by_text("Comment on or correct an answer").click()
            expect(page.locator("#which-answer input")).to_have_value("1. When were GANs introduced?", timeout=30_000)
            page.fill("#correction textarea", "In 2014, by Ian Goodfellow and colleagues.")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#status")).to_contain_text(
                "Saved your correction with answer 1 (“When were GANs introduced?”).", timeout=30_000)
            expect(page.locator("#correction textarea")).to_have_value("")

            page.get_by_text("Rename, export or delete").click()
            page.fill("#new-title textarea", "GAN history from the first adversarial networks to the diffusion era")
            page.click("#rename")
            # Said by the buttons clicked (it was said under the chat, out of their sight).
            expect(page.locator("#conversation-tools #conversation-status")).to_contain_text("Renamed.", timeout=30_000)
            expect(page.locator("#conversations")).to_contain_text("GAN history", timeout=30_000)
            expect(page.locator("#exported")).to_be_hidden()  # empty, it looked like a drop zone
            page.click("#export")
            # Named after its title; its answer's [1] listed with the passage it names.
            expect(page.locator("#exported")).to_contain_text(re.compile(r"GAN history from the first adversarial networks to the diffusion era\s*\.md"), timeout=30_000)
            expect(page.locator("#conversation-status")).to_contain_text(
                "Exported as GAN history from the first adversarial networks to the diffusion era.md: the ⇣ beside its size")
            # What the status names is the download link (it said "click its name", which is no link).
            expect(page.locator("#exported a[data-testid='download-link']")).to_contain_text("⇣")
            # The whole name is shown in the narrow column (Gradio's row clipped it to ".n").
            shown = page.locator("#exported td.filename").evaluate(
                "e => [e, e.querySelector('.stem'), e.querySelector('.ext')].map(x => x.scrollWidth <= x.clientWidth + 1)"
                ".concat([e.querySelector('.stem').getBoundingClientRect().width])")
            assert all(shown[:3]) and shown[3] > 20, shown
            # A name that wraps ends with its ".md" on its last line: Gradio's row made ".md" a
            # column of its own, one letter per line (helper-54).
            ext_lines = page.locator("#exported td.filename .ext").evaluate(
                "e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).fontSize)")
            assert ext_lines < 2, ext_lines
            exported = list((data_dir / "exports").glob("*/*.md"))
            assert [p.name for p in exported] == ["GAN history from the first adversarial networks to the diffusion era.md"]
            text = exported[0].read_text()
            assert "When were GANs introduced?" in text and "[1] gans.md" in text, text
            # A new conversation takes away what spoke of the one left: its export, a delete question.
            page.click("#delete")
            expect(page.locator("#delete-check")).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="New conversation").click()
            expect(page.locator("#exported")).to_be_hidden(timeout=30_000)
            expect(page.locator("#delete-check")).to_be_hidden()
            page.locator("#conversations label", has_text="GAN history").click()  # and back to it
            expect(page.locator("#chat .message.bot")).to_have_count(1, timeout=30_000)

            other = browser.new_context().new_page()  # another browser: its own token, nothing listed
            other.goto(url)
            expect(other.locator("#conversations")).not_to_contain_text("GAN history", timeout=30_000)
            # and says why its list is empty (a new browser showed an empty box, no reason).
            expect(other.locator("#conversations")).to_contain_text("None yet in this browser", timeout=30_000)
            assert other.locator("#chat .message").count() == 0
            expect(other.get_by_role("group", name="New here? Click a question")).to_be_visible(timeout=30_000)
            # Its next visit is no first visit, though it has no conversation (as after deleting
            # its last one): the suggestions are offered as to a new conversation.
            other.reload()
            expect(other.get_by_role("group", name="Click a question about your documents to ask it, or type")
                   ).to_be_visible(timeout=30_000)

            # Deleting asks first: "Keep it" keeps it, "Yes, delete it" deletes it.
            page.click("#delete")
            # The question stands with its buttons, above them (it was in the status line under the chat).
            expect(page.locator("#delete-check")).to_contain_text("Delete “GAN history from the first adversarial networks to the diffusion era”?", timeout=30_000)
            assert _above(page, "#delete-question", "#delete-yes")
            page.click("#delete-no")
            expect(page.locator("#conversation-status")).to_contain_text("Not deleted.", timeout=30_000)
            expect(page.locator("#delete-yes")).to_be_hidden()
            expect(page.locator("#conversations")).to_contain_text("GAN history")
            page.click("#delete")
            page.click("#delete-yes")
            expect(page.locator("#conversation-status")).to_contain_text("Conversation deleted", timeout=30_000)
            expect(page.locator("#exported")).to_be_hidden()  # its export went with it
            expect(page.locator("#conversations")).not_to_contain_text("GAN history")
            page.screenshot(path=str(ARTIFACTS / "chat-conversations.png"))

            # The document library: the document is listed, deleted, and its passages never come back.
            page.get_by_text("Your documents", exact=True).click()
            expect(page.locator("#documents")).to_contain_text("gans.md", timeout=30_000)
            # All three columns fit the side column: the table does not scroll sideways.
            expect(page.locator("#documents")).to_contain_text("markdown")
            table = page.locator("#documents .virtual-table-viewport")
            expect(table).to_have_count(1)
            assert table.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), table.evaluate(
                "el => [el.scrollWidth, el.clientWidth]")
            # Re-ingest with no document chosen asks for one; a click on its row chooses it (the
            # rows looked clickable and did nothing), and the request goes (it stayed).
            expect(page.locator("#document-choice input")).to_have_value("")
            page.click("#reingest")
            expect(page.locator("#library-status")).to_have_text("Choose a document first.", timeout=30_000)
            page.locator("#documents").get_by_text("gans.md", exact=True).last.click()
            expect(page.locator("#document-choice input")).to_have_value(re.compile(r"^gans\.md \("), timeout=30_000)
            expect(page.locator("#library-status")).to_have_text("", timeout=10_000)
            page.click("#reingest")  # the library is drawn again, and the document stays chosen
            expect(page.locator("#library-status")).to_contain_text("its passages are up to date", timeout=60_000)
            page.wait_for_timeout(500)  # the redraw follows the status
            expect(page.locator("#document-choice input")).to_have_value(re.compile("gans.md"))
            # Asks first, as for a conversation; clicked at the window's bottom edge (no scrolling
            # to it), the question's buttons are brought into view rather than left below the fold.
            # (A low window, so that there is a fold to fall below.)
            page.set_viewport_size({"width": 1400, "height": 450})
            delete_button = page.locator("#delete-document")
            delete_button.evaluate("e => e.scrollIntoView({block: 'end'})")
            box = delete_button.bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.locator("#delete-document-check")).to_contain_text("Delete gans.md?", timeout=30_000)
            expect(page.locator("#delete-document-yes")).to_be_in_viewport(ratio=1, timeout=10_000)
            assert _above(page, "#delete-document-question", "#delete-document-yes")
            page.set_viewport_size({"width": 1400, "height": 900})
            page.click("#delete-document-yes")
            expect(page.locator("#library-status")).to_contain_text("Deleted gans.md", timeout=60_000)
            expect(page.locator("#documents")).not_to_contain_text("gans.md", timeout=30_000)
            # (Not the corrected question: the user's correction would answer it, documents or not.)
            page.fill("#question textarea", "What is a generative adversarial network made of?")
            page.click("#ask")
            expect(page.locator("#sources")).to_contain_text("No source", timeout=120_000)
            expect(page.locator("#sources")).not_to_contain_text("gans.md")
            expect(page.locator("#chat .message.bot").last).to_contain_text("do not contain the answer")
        browser.close()
    assert not list((data_dir / "exports").glob("**/*.md"))  # the export went with the conversation
    reopened = RagBot.open(data_dir)
    # The deleted conversation's answer is kept for tuning, next to the refusal asked afterwards.
    assert reopened.store._db.execute("SELECT refused FROM answers WHERE question != ? ORDER BY created_at",
                                      (suggested,)).fetchall() == [(0,), (1,)]
    assert reopened.store._db.execute("SELECT vote, correction FROM feedback").fetchone() == \
        (1, "In 2014, by Ian Goodfellow and colleagues.")
    reopened.close()


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM,
                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def test_regenerate_edit_citations_pdf_pages_and_chosen_documents(make_bot):
    """Regenerate and edit-and-resend replace the turn (also after a reload); a citation [n] of
    an older answer shows that answer's passage n, highlighted; a PDF's page opens from the
    app's own address; a question searches only the documents chosen for it."""
    import sqlite3

    from playwright.sync_api import expect, sync_playwright

    from conftest import running_chat

    bot = make_bot(default_corpus=None)
    corpus = ROOT / "corpus"
    assert bot.ingest([corpus / "gans.md", corpus / "vaes.md", corpus / "generative-ai-applications-by-industry.pdf"]).ok
    data_dir = bot.settings.data_dir
    bot.close()

    def answers() -> int:
        with sqlite3.connect(data_dir / "ragbot.db") as db:
            return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def answered(n: int) -> None:
        """Wait until the log holds n answers and the page has opened its question box again."""
        for _ in range(600):
            if answers() >= n:
                break
            page.wait_for_timeout(200)
        assert answers() == n
        expect(box).to_have_attribute("placeholder", re.compile("Ask about"), timeout=60_000)

    with running_chat(data_dir, "--no-default-corpus") as url, sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        # Every load of the page, ours and any Gradio makes itself after losing its server (its
        # reconnect reloads the page), and what it logged: said if the turns below disagree.
        loads, logged = [], []
        started = time.monotonic()
        page.on("load", lambda _: loads.append(round(time.monotonic() - started, 1)))  # seconds into the test
        page.on("console", lambda message: logged.append(f"{message.type}: {message.text}"[:200]))
        page.goto(url)
        box = page.locator("#question textarea")

        def stored_turns() -> list:
            with sqlite3.connect(data_dir / "ragbot.db") as db:
                return db.execute("SELECT conversation_id, turn, question FROM answers ORDER BY created_at").fetchall()

        def one_conversation(after: str) -> None:
            """Every answer so far is in one conversation; said in full, with the page's loads and
            console, if not. (CI saw the conversation change with no click that starts one: a load
            event of Gradio's raced on_load's, see test_app's test_no_two_load_events_….)"""
            turns = stored_turns()
            assert len({c for c, _, _ in turns}) == 1, (
                f"after {after}, answers in {len({c for c, _, _ in turns})} conversations:\n"
                + "\n".join(map(str, turns)) + f"\npage loads at {loads} s\nconsole: {logged[-20:]}")

        def ask(question: str, answers_before: int) -> None:
            expect(box).to_be_editable(timeout=60_000)
            box.fill(question)
            page.click("#ask")
            answered(answers_before + 1)

        # Limits said on the page: an empty question is a notice (nothing asked), the box takes
        # at most MAX_QUESTION_CHARS, and Gradio's API and footer links are not shown.
        expect(box).to_be_editable(timeout=60_000)
        page.click("#ask")
        expect(page.get_by_text("Type a question first.")).to_be_visible(timeout=30_000)
        assert answers() == 0 and page.locator("#chat [data-testid='user']").count() == 0
        from ragbot.interfaces.rendering import MAX_QUESTION_CHARS

        assert box.get_attribute("maxlength") == str(MAX_QUESTION_CHARS)
        assert page.get_by_text("Use via API").count() == 0 and page.get_by_text("Built with Gradio").count() == 0

        ask("How is generative AI used in healthcare & finance?", 0)
        opener = page.locator("#sources a.ragbot-open").first
        expect(opener).to_be_visible(timeout=30_000)
        href = opener.get_attribute("href")
        assert re.fullmatch(r"ragbot/documents/\d+#page=\d+", href) and opener.get_attribute("target") == "_blank"
        pdf = page.request.get(url + href.split("#")[0])
        assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("inline") and pdf.body().startswith(b"%PDF")
        assert page.request.get(url + "ragbot/documents/99999").status == 404

        # Regenerate: asked again, still one turn on the page, a second answer in the log.
        page.locator('#chat button[aria-label="Retry"]').last.click()
        answered(2)
        assert page.locator("#chat [data-testid='user']").count() == 1
        one_conversation("the regenerate")

        # Edit and resend: the question, changed where it stands (its "&" read back as "&"), is
        # asked in its place, and its answer replaces the old one.
        page.locator("#chat [data-testid='user']").last.hover()
        page.locator('#chat button[aria-label="Edit"]').last.click()
        page.locator("#chat textarea").last.press("End")
        page.locator("#chat textarea").last.type(" In banks?")
        page.locator("#chat textarea").last.press("Enter")  # sends it, as in the question box
        answered(3)
        with sqlite3.connect(data_dir / "ragbot.db") as db:
            asked = db.execute("SELECT question FROM answers ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        assert asked == "How is generative AI used in healthcare & finance? In banks?"
        assert page.locator("#chat [data-testid='user']").count() == 1
        one_conversation("the edit")
        # The conversation is named by its first question as it now reads (it kept the old one).
        expect(page.locator("#conversations")).to_contain_text("finance? In banks?", timeout=30_000)

        ask("What does the encoder of a variational autoencoder output?", 3)
        one_conversation("a second question")
        expect(page.locator("#sources")).to_contain_text("vaes.md")
        # [n] of the older answer: the panel shows that answer's passage n, marked and in view.
        cite = page.locator("#chat [data-testid='bot']").first.locator("a.ragbot-cite").first
        n = cite.get_attribute("href").removeprefix("#source-")
        cite.click()
        marked = page.locator("#sources .ragbot-highlight")
        expect(marked).to_contain_text(".pdf", timeout=30_000)
        expect(marked).to_have_attribute("id", f"source-{n}")
        expect(marked).to_be_in_viewport()
        # On a narrow window the sources panel sits under the chat: a citation clicked there brings
        # its passage from below the fold to the middle of the window, not to its bottom edge.
        page.set_viewport_size({"width": 700, "height": 800})
        page.evaluate("window.scrollTo(0, 0)")
        expect(marked).not_to_be_in_viewport()
        cite.click()
        expect(marked).to_be_in_viewport(ratio=1)
        where = marked.bounding_box()
        # Centred, unless the page ends before it can be: the window is then scrolled to its end
        # (a passage near the bottom of a short page; the upload section, closed once documents
        # are stored, no longer adds room below the sources).
        at_end = page.evaluate("window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1")
        assert abs(where["y"] + where["height"] / 2 - 400) < 100 or at_end, where
        page.set_viewport_size({"width": 1300, "height": 900})
        assert page.locator("#sources").inner_text().count("vaes.md") == 0  # not the latest answer's sources
        page.screenshot(path=str(ARTIFACTS / "chat-citation.png"))

        page.reload()  # the stored conversation is what the page showed: the edited turn, then the VAE one
        expect(page.locator("#chat [data-testid='user']")).to_have_count(2, timeout=60_000)
        expect(page.locator("#chat [data-testid='user']").first).to_contain_text("finance? In banks?")

        # Only the chosen document is searched: a GAN question finds no GAN passage.
        page.get_by_text("Your documents", exact=True).click()
        # (First: choosing another document takes a delete question away; it stood over the other's name.)
        for name in ("gans.md", "vaes.md"):
            page.locator("#document-choice input").click()
            page.locator("#document-choice").get_by_role("option", name=re.compile(name)).click()
            if name == "gans.md":
                page.click("#delete-document")
                expect(page.locator("#delete-document-check")).to_contain_text("Delete gans.md?", timeout=30_000)
        expect(page.locator("#delete-document-check")).to_be_hidden(timeout=10_000)
        page.locator("#search-in input").click()
        page.locator("#search-in").get_by_role("option", name=re.compile("vaes.md")).click()
        page.keyboard.press("Escape")
        ask("Who introduced generative adversarial networks?", 4)
        one_conversation("the reload and a question")
        expect(page.locator("#sources")).not_to_contain_text("gans.md")
        expect(page.locator("#sources .ragbot-searched")).to_have_text(
            "Searched only the document chosen under “Your documents”: vaes.md.")
        with sqlite3.connect(data_dir / "ragbot.db") as db:
            params = db.execute("SELECT params FROM answers ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        assert '"sources": ["' in params and "vaes.md" in params and "gans.md" not in params
        # The choice's label counts it, and a refusal from it alone says how to search all (the
        # chat's refusal read as the whole library's; the label said "none chosen").
        expect(page.locator("#search-in")).to_contain_text("1 chosen: only it is searched")
        # So does the question box, in view with the panel closed (the choice outlives a reload).
        expect(page.locator("#question")).to_contain_text("Searching only the document chosen under “Your documents”.")
        # Its ✕ names the document it removes (Gradio titled it by the choice's index: "Remove 2").
        expect(page.locator("#search-in .token .token-remove")).to_have_attribute(
            "title", re.compile(r"^Remove vaes\.md \(.*corpus\)$"))
        ask("What is the discriminator of a GAN?", 5)
        # The refusal names the chosen document, not "the documents" (helper-54's drive).
        expect(page.locator("#chat .message.bot").last).to_have_text(
            "I don't know: the chosen document does not contain the answer.")
        hint = "vaes.md. To search all of them, clear “Search only these documents”."
        expect(page.locator("[data-testid='toast-body']")).to_contain_text(hint, timeout=30_000)
        expect(page.locator("#sources .ragbot-searched")).to_contain_text(hint)
        # The choice outlives a reload, as the other settings do.
        page.reload()
        expect(page.locator("#question textarea")).to_be_editable(timeout=60_000)
        expect(page.locator("#question")).to_contain_text("Searching only the document chosen", timeout=30_000)
        page.get_by_text("Your documents", exact=True).click()
        expect(page.locator("#search-in")).to_contain_text("vaes.md", timeout=30_000)
        expect(page.locator("#sources .ragbot-searched")).to_contain_text("vaes.md")
        # So does clearing it with the dropdown's clear button (a change without an `input` event).
        page.locator("#search-in .remove-all").click()
        expect(page.locator("#search-in")).not_to_contain_text("vaes.md")
        expect(page.locator("#question")).not_to_contain_text("Searching only", timeout=10_000)
        page.wait_for_timeout(1_000)  # the browser's record is written after the change
        page.reload()
        expect(page.locator("#question textarea")).to_be_editable(timeout=60_000)
        page.get_by_text("Your documents", exact=True).click()
        # The library's load fills the table and sets the choice in one update.
        expect(page.locator("#documents")).to_contain_text("vaes.md", timeout=30_000)
        expect(page.locator("#search-in")).not_to_contain_text("vaes.md")

        # Choosing an earlier answer to correct shows that answer's sources, whose [n] a
        # correction cites, in place of the latest answer's.
        expect(page.locator("#sources")).to_contain_text("vaes.md")
        page.get_by_text("Comment on or correct an answer").click()
        page.locator("#which-answer input").click()
        page.get_by_role("option", name=re.compile(r"^1\. How is generative AI")).click()
        expect(page.locator("#sources")).to_contain_text(".pdf", timeout=30_000)
        expect(page.locator("#sources")).not_to_contain_text("vaes.md")

        # The chat's own trash button starts a new conversation; the old one stays listed.
        page.locator('#chat button[aria-label="Clear"]').click()
        expect(page.locator("#chat [data-testid='user']")).to_have_count(0)
        ask("What does the decoder of a variational autoencoder do?", 6)
        turns = stored_turns()
        assert len({c for c, _, _ in turns}) == 2 and turns[-1][1] == 1, (
            "\n".join(map(str, turns)) + f"\npage loads at {loads} s\nconsole: {logged[-20:]}")
        expect(page.locator("#conversations label")).to_have_count(2, timeout=30_000)
        browser.close()


def test_votes_are_shown_where_they_were_given_and_nowhere_else(make_bot):
    """A thumbs-up stays shown after a reload and when its conversation is reopened, and is not
    carried over to the answer that takes its place in a new conversation (the Chatbot keeps
    its thumbs by position: every change of its messages must send them, ChatHandlers.votes)."""
    from playwright.sync_api import expect, sync_playwright

    from conftest import running_chat

    bot = make_bot()
    bot.ingest([ROOT / "corpus" / "gans.md"])
    liked = '#chat button[aria-label="Liked"]'
    with sync_playwright() as p, running_chat(bot.settings.data_dir) as url:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.goto(url)

        def ask(question: str, answers: int) -> None:
            page.fill("#question textarea", question)
            page.click("#ask")
            expect(page.locator("#chat [data-testid='bot']")).to_have_count(answers, timeout=180_000)
            expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=180_000)
            expect(page.locator("#question textarea")).to_be_editable(timeout=60_000)

        ask("When were GANs introduced?", 1)
        page.locator('#chat button[aria-label="Like"]').last.click()
        expect(page.locator("#status")).to_contain_text("marked helpful", timeout=30_000)
        expect(page.locator(liked)).to_have_count(1)
        ask("What is mode collapse?", 2)  # the first answer keeps its thumb; the status is not left stale
        expect(page.locator(liked)).to_have_count(1)
        expect(page.locator("#status")).not_to_contain_text("marked helpful", timeout=30_000)

        page.reload()  # the votes come back, and the latest answer's sources with them
        expect(page.locator("#chat [data-testid='bot']")).to_have_count(2, timeout=60_000)
        expect(page.locator(liked)).to_have_count(1, timeout=30_000)
        expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=30_000)
        # A thumbs-down on the older answer makes it the one to correct, its sources shown (the
        # box stayed on the latest answer: helper-81's drive).
        page.get_by_text("Comment on or correct an answer").click()
        expect(page.locator("#which-answer input")).to_have_value("2. What is mode collapse?", timeout=30_000)
        page.locator('#chat button[aria-label="Dislike"]').first.click()
        expect(page.locator("#status")).to_contain_text("marked unhelpful. It is now chosen under", timeout=30_000)
        expect(page.locator("#which-answer input")).to_have_value("1. When were GANs introduced?", timeout=30_000)
        expect(page.locator("#sources")).to_contain_text("For the answer to “When were GANs introduced?”")
        expect(page.locator(liked)).to_have_count(0)
        page.locator('#chat button[aria-label="Like"]').first.click()  # liked again, for what follows
        expect(page.locator("#status")).to_contain_text("marked helpful", timeout=30_000)
        expect(page.locator(liked)).to_have_count(1)

        page.click("#stop")
        expect(page.locator("#status")).to_contain_text("Nothing to stop.", timeout=30_000)
        page.locator('#chat button[aria-label="Clear"]').click()  # a new conversation
        expect(page.locator("#chat [data-testid='user']")).to_have_count(0)
        # The status spoke of the conversation left: it goes with it.
        expect(page.locator("#status")).to_be_empty(timeout=30_000)
        ask("What is a GAN?", 1)
        expect(page.locator(liked)).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "chat-votes-new-conversation.png"))

        page.locator("#conversations label").filter(has_text="When were GANs introduced?").click()
        expect(page.locator("#chat .message.bot").first).to_contain_text("2014", timeout=60_000)
        expect(page.locator(liked)).to_have_count(1, timeout=30_000)
        expect(page.locator("#sources .ragbot-source").first).to_be_visible(timeout=30_000)
        browser.close()


def test_stop_ends_a_streaming_answer_within_a_second(corpus_bot):
    """The generate mode streams for seconds: meanwhile the question box is closed and says
    why; Stop ends the answer within a second and opens the box again. On the transformers
    backend, whose answers take seconds: llama.cpp's can end before a click lands (its stop is
    tested in test_ask.py and test_generators.py)."""
    import time

    from playwright.sync_api import expect, sync_playwright

    from conftest import running_chat
    from ragbot.models import resolve_generator

    resolve_generator(corpus_bot.settings)  # converted once, in the shared data dir
    with running_chat(corpus_bot.settings.data_dir, "--answer-mode", "generate", "--backend", "transformers") as url, \
            sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        box = page.locator("#question textarea")
        expect(box).to_be_editable(timeout=60_000)
        box.fill("Explain in detail how diffusion models generate images, step by step.")
        page.click("#ask")
        expect(box).to_have_attribute("placeholder", re.compile("Answering"), timeout=10_000)
        expect(box).to_be_disabled()
        message = page.locator("#chat [data-testid='bot']").last
        expect(message).not_to_have_text("", timeout=180_000)  # the first sentence has streamed
        # No vote on a half-written answer: where the page offers the button, the vote is refused.
        votes_before = corpus_bot.store._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        like = page.locator("#chat [data-testid='bot']").last.locator("xpath=..").locator('button[aria-label="Like"]')
        if like.count():
            like.first.click()
            expect(page.locator("#status")).to_contain_text("no recorded answer", timeout=10_000)
        page.click("#stop")
        clicked = time.monotonic()
        last_text, last_change = message.inner_text(), clicked
        while time.monotonic() - clicked < 4:
            text = message.inner_text()
            if text != last_text:
                last_text, last_change = text, time.monotonic()
            page.wait_for_timeout(100)
        assert last_change - clicked < 1.0, f"text still changed {last_change - clicked:.1f} s after Stop"
        expect(page.locator("#sources")).to_contain_text("Stopped", timeout=5_000)
        expect(box).to_be_editable(timeout=5_000)
        browser.close()
    assert corpus_bot.store._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == votes_before
