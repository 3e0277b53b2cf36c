"""The browser chat UI (Gradio): the page's layout and its events, wired to ChatHandlers
(handlers.py), which does the work; what is shown is rendered by rendering.py.

No `from __future__ import annotations` here: Gradio reads the real type hints of event
handlers (gr.LikeData, gr.Request) to know what to inject.
"""

import hashlib
import html
import os
import re
import uuid
from pathlib import Path

from ragbot.bot import RagBot
from ragbot.ingest.readers import readable_suffixes
from ragbot.interfaces.conversations import ConversationError
from ragbot.interfaces.handlers import (
    BUSY,
    CHOOSE_FIRST,
    DEFAULT_MAX_UPLOAD_MB,
    DOCUMENT_ROUTE,
    FIRST_VISIT_SUGGESTIONS,
    MAX_K,
    MAX_TEMPERATURE,
    NEW_CONVERSATION_SUGGESTIONS,
    SAVED,
    ChatHandlers,
)
from ragbot.interfaces.rendering import (
    MAX_QUESTION_CHARS,
    answer_id_of,
    literal,
    message_at,
    message_index,
    message_text,
    notice,
    question_info,
    render_sources,
    search_label,
    turn_of,
)


READY = "Ask about your documents…"


NO_CONVERSATIONS = ("None yet in this browser: one is listed here once you ask. Each browser keeps its own "
                    "list; another browser's conversations do not show here.")


def conversation_list(choices: list[tuple[str, str]], chosen: str | None) -> dict:
    """The update of the conversation list: its choices, the one open, and when there are none,
    why (a new browser, or one whose site data was cleared, showed an empty box and no reason)."""
    import gradio as gr

    return gr.update(choices=choices, value=chosen, info="" if choices else NO_CONVERSATIONS)


def bounded_slider(minimum: float, maximum: float, **kwargs):
    """A slider whose value is brought into its range on the server. Typed into its number box,
    50 for "Passages to retrieve" (up to 20) showed 20 but was sent as 50, which Gradio refused
    with "Value 50 is greater than maximum value 20" on the next question and a traceback in the
    server's log, and the settings were not remembered. Clamped here, the value used is the one
    the box shows; a value that is not a number is refused."""
    import math

    import gradio as gr

    # The instance's own preprocess, not a subclass: Gradio's component metaclass writes a .pyi
    # file next to the module of any subclass (and would fail where the package is read-only).
    slider = gr.Slider(minimum, maximum, **kwargs)
    checked = slider.preprocess

    def preprocess(payload):
        # An emptied box arrives as None; Gradio let NaN through, and gave a TypeError for the rest.
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or math.isnan(payload):
            raise gr.Error(f"{slider.label} must be a number.")
        payload = min(max(payload, slider.minimum), slider.maximum)
        if slider.step:  # on the slider's steps, as dragging it gives (7.4 passages is 7)
            payload = slider.minimum + round((payload - slider.minimum) / slider.step) * slider.step
            payload = min(round(payload, 10), slider.maximum)
        return checked(payload)

    # Kept while nothing sends these sliders a new property: Gradio makes a block anew for a
    # session on a property update (a value alone is no property), which would drop the wrapper.
    slider.preprocess = preprocess
    return slider


CSS = """
/* Gradio's theme loads Source Sans Pro at 400 and 600 only, so text set bold (700: a passage's
   heading, a [n], a correction's mark) took some glyphs from another face, "A" among them. Its
   bold face ships with Gradio: it is declared here too. */
@font-face { font-family: "Source Sans Pro"; font-weight: 700; font-style: normal;
  src: url("static/fonts/SourceSansPro/SourceSansPro-Bold.woff2") format("woff2"); }
.ragbot-muted { color: #6b7280; font-size: 0.9em; }
.ragbot-stopped { color: #6b7280; font-size: 0.9em; font-style: italic; }
.ragbot-passage mark.ragbot-quote { background: #fde68a; color: #1f2937; border-radius: 2px; }
.ragbot-for { color: #6b7280; font-size: 0.9em; font-style: italic; }
.ragbot-correction { color: #92400e; font-weight: 600; }
/* A file the page refuses to send (a type ragbot does not read, or over the size limit) or whose
   upload fails is named in Gradio's notice; Gradio also left a red "Error" over the upload box,
   covering where files are dropped, until its ✕ was found. The notice says it all (any error of
   this box is told by its notice alone), and the box stays ready for the next file. Upload
   progress is drawn elsewhere, so it still shows. */
#upload [data-testid="status-tracker"]:has(> .error) { display: none; }
/* The conversations column comes last in the page (a keyboard and a screen reader reach the chat
   first, then its sources) but stands first, on the left, where the columns fit side by side. On
   a phone they stand one under another in the page's order: the chat and its question box first
   (the conversations, listed first, pushed them down). */
@media (min-width: 641px) {
  #conversations-column { order: -1; }
}
.ragbot-searched { border-left: 3px solid #60a5fa; padding-left: 8px; }
/* Gradio sets `.prose blockquote { margin: 24px 0 !important }`, so each passage's header stood
   closer to the passage above than to its own: only an !important rule of ours (Gradio scopes it
   to its container, so it is the more specific) puts the space between passages instead. */
.ragbot-source { margin-bottom: 14px; }
/* A run without spaces (a contents page's dot leaders "Vision……………1") wraps instead of running
   past the column's edge. */
.ragbot-source blockquote.ragbot-passage { margin: 4px 0 0 0 !important; padding-left: 8px;
  border-left: 3px solid #d1d5db; white-space: pre-wrap; overflow-wrap: anywhere; }
.ragbot-source.ragbot-highlight { background: #fef9c3; outline: 2px solid #facc15; }
/* A citation's number is its link: told by the link colour, at its brackets' weight (bold, the
   digit looked larger than the brackets round it). */
a.ragbot-cite { text-decoration: none; color: var(--link-text-color); }
.ragbot-more > summary { cursor: pointer; list-style: none; }
.ragbot-more > summary::-webkit-details-marker { display: none; }
.ragbot-more[open] > summary { display: none; }
/* The library's cells in the page's own font, a size smaller (Gradio's table font is monospace
   14px: a row wrapped to four lines, and four documents filled the box). The cells shown are the
   virtual table's divs; Gradio's <td>s only measure. */
#documents .cell-wrap span.text { font-family: var(--font) !important; font-size: var(--text-sm) !important;
  line-height: 1.35 !important; overflow-wrap: anywhere; }
/* Scrolled down, the table shows a "back to the top" button over its bottom right corner, where it
   covered the last row's date: the rows end a button's height above the table's bottom instead. */
#documents .virtual-body { margin-bottom: 44px; }
/* Gradio's file row keeps a name on one line and clips it: in the narrow column an export's
   name showed as ".n". The name wraps there instead, the size and download link below it. */
#exported tr.file { display: flex; flex-wrap: wrap; }
#exported td.filename { white-space: normal !important; overflow-wrap: anywhere; width: 100%; max-width: none; }
#exported td.filename .stem, #exported td.filename .ext { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
/* Gradio lays the stem and the extension side by side (a flex row): a stem that wrapped left ".md"
   a column of its own, one letter per line. They run on as one name, with no space between (the
   markup's spaces between the two take no room at font size 0). */
#exported td.filename { display: block !important; font-size: 0 !important; }
#exported td.filename .stem, #exported td.filename .ext { display: inline !important; font-size: var(--text-md) !important; }
/* A conversation named by a question with a long word (a URL) ran out of its column, clipped:
   the title wraps anywhere instead. */
#conversations label { max-width: 100%; min-width: 0; }
#conversations label > span { min-width: 0; overflow-wrap: anywhere; }
/* Gradio floats the chat's toolbar (clear, copy all) over the top right corner of the scrolled
   messages, so it covered a question's bubble and its buttons there. It gets a strip of its own
   above the messages instead: the chat box is a column, the messages fill what is left. */
#chat .wrapper:has(> .top-panel) { display: flex; flex-direction: column; }
#chat .wrapper > .top-panel { position: static; align-self: flex-end; flex: none; }
#chat .wrapper > .bubble-wrap { flex: 1 1 auto; min-height: 0; }
"""


def scrolled_into_view(element_id: str) -> str:
    """Browser code that brings the element into the window once the page has drawn it: the
    "Yes, delete it" buttons appeared below the fold of the side column, unseen. An element
    already in view stays where it is."""
    return (f"() => {{ setTimeout(() => {{ const e = document.getElementById({element_id!r}); "
            f"const r = e && e.getBoundingClientRect(); "
            f"if (r && (r.top < 0 || r.bottom > window.innerHeight)) e.scrollIntoView({{block: 'center'}}); "
            f"}}, 100); }}")


def session_of(request) -> str:
    """Who is asking: the logged-in user (when login is on) and the browser session."""
    return f"{getattr(request, 'username', None) or ''}|{getattr(request, 'session_hash', None) or ''}"


_TOKEN = re.compile(r"^[0-9a-f]{32}$")


def browser_secret(data_dir: Path) -> str:
    """The key Gradio encrypts the browser's saved state with, made once per data dir. It is not
    a password (Gradio sends it to the page); it only has to outlive a server restart."""
    import secrets

    from ragbot.storage.files import write_atomic

    path = data_dir / "browser-state.key"
    try:
        key = path.read_text(encoding="ascii").strip()
        if _TOKEN.match(key):
            return key
    except (OSError, UnicodeDecodeError):
        pass
    key = secrets.token_hex(16)
    write_atomic(path, key)
    return key


def session_conversation(request) -> str:
    """The conversation of a session that no page load gave one (an API client's): one id per
    session, of the shape the page's ids have."""
    return hashlib.sha256(f"conversation|{session_of(request)}".encode()).hexdigest()[:32]


def owner_of(request, browser: dict | None) -> str:
    """Whose conversations these are: the logged-in user, else the browser's own random token
    (kept in its local storage; a token of another shape is not trusted and gives nothing)."""
    user = getattr(request, "username", None)
    if user:
        return f"user:{user}"
    token = str((browser or {}).get("owner") or "")
    return f"browser:{token}" if _TOKEN.match(token) else f"session:{getattr(request, 'session_hash', '')}"


def remembered(saved: dict | None, **changes) -> dict | None:
    """What this browser keeps, with `changes`; None (leave it as it is) while the page holds no
    owner token yet: a change written then would replace the whole record, and the browser would
    lose its token and with it its conversations."""
    if not _TOKEN.match(str((saved or {}).get("owner") or "")):
        return None
    return {**saved, **changes}


def build_app(bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    handlers = ChatHandlers(bot, max_upload_mb)

    def empty_chat():
        """No messages, and no thumbs shown (see ChatHandlers.votes)."""
        return gr.update(value=[], feedback_value=[])

    def keep(saved, **changes):
        """The browser's record with `changes`, or no change at all (see remembered)."""
        record = remembered(saved, **changes)
        return gr.skip() if record is None else record

    def deletion_check(name: str):
        """The question asked before a delete, standing above its two buttons, hidden until
        asked: (box, question, yes, no), their elem_ids `name`-check, -question, -yes, -no."""
        with gr.Column(visible=False, elem_id=f"{name}-check") as box:
            asked = gr.Markdown(elem_id=f"{name}-question")
            with gr.Row():
                yes = gr.Button("Yes, delete it", variant="stop", elem_id=f"{name}-yes")
                no = gr.Button("Keep it", elem_id=f"{name}-no")
        return box, asked, yes, no

    with gr.Blocks(title="ragbot", analytics_enabled=False) as app:
        # Set by on_load alone. A callable default would have Gradio attach a load event of its
        # own that sets a fresh id, racing on_load's: when it finished last, the page went on in
        # a new conversation with the old one still shown (the browser tests' rare "answers in 2
        # conversations" and "Not renamed: no such conversation").
        conversation = gr.State(None)
        # What this browser keeps between visits: its owner token, the open conversation, settings.
        # Gradio encrypts it with this secret: one per data dir, so it still reads after a restart.
        browser = gr.BrowserState({}, storage_key="ragbot", secret=browser_secret(bot.settings.data_dir))
        gr.Markdown("## ragbot — answers from your documents, with sources")
        with gr.Row():
            with gr.Column(scale=3, elem_id="chat-column"):
                # Regenerate (the retry button) and edit-and-resend (a question's pencil) ask again
                # from that question on; what followed it is replaced, as in the stored conversation.
                # Its label is not shown: it floated over the top message once the chat scrolled.
                # No share button: it posts to Hugging Face Spaces, which a local chat is not
                # (it had no label and did nothing); copy, copy-all and the trash stay.
                chat = gr.Chatbot(label="Chat", show_label=False, height=480, sanitize_html=True,
                                  render_markdown=False, elem_id="chat", feedback_options=("Like", "Dislike"),
                                  editable="user", buttons=["copy", "copy_all"])
                # Usable once the page has loaded its conversation (on_load), so a first question
                # always lands in this browser's own conversation.
                # The browser cuts a longer paste at the limit without a word: the limit is shown.
                question = gr.Textbox(label="Question", placeholder="Loading…", elem_id="question",
                                      max_length=MAX_QUESTION_CHARS, interactive=False,
                                      info=question_info([]))
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask", interactive=False)
                    stop = gr.Button("Stop", elem_id="stop")
                    new_chat = gr.Button("New conversation")
                # A click asks the question (it only filled the box, and a newcomer waited for an answer).
                examples = gr.Radio(choices=[], label=FIRST_VISIT_SUGGESTIONS, elem_id="examples", visible=False)
                status = gr.Markdown(elem_id="status")
                with gr.Accordion("Comment on or correct an answer", open=False):
                    which = gr.Dropdown(choices=[], label="Answer (latest first)", elem_id="which-answer")
                    comment = gr.Textbox(label="Comment", elem_id="comment")
                    correction = gr.Textbox(label="Corrected answer", elem_id="correction",
                                            placeholder="The right answer; cite the source that holds it as [n]",
                                            info="[n] is a passage's number in Sources. The passages the answer "
                                                 "did not cite are there too under Settings: Show all retrieved "
                                                 "passages.")
                    saved_feedback = gr.Markdown(elem_id="saved-feedback")
                    save_comment = gr.Button("Save")
            with gr.Column(scale=2, elem_id="sources-column"):
                gr.Markdown("### Sources")
                sources = gr.HTML(render_sources(None, False), elem_id="sources")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    k = bounded_slider(1, MAX_K, value=min(bot.settings.top_k, MAX_K), step=1, label="Passages to retrieve",
                                       elem_id="passages-to-retrieve")
                    show_all = gr.Checkbox(False, label="Show all retrieved passages", elem_id="show-all")
                    # Only a generator samples: quoted answers have no temperature.
                    temperature = bounded_slider(0.0, MAX_TEMPERATURE, value=bot.settings.temperature, step=0.05,
                                                 elem_id="temperature",
                                            label="Temperature", visible=bot.settings.answer_mode == "generate")
                    info = gr.Markdown(handlers.model_info())
                with gr.Accordion("Your documents", open=False, elem_id="library") as library_panel:
                    # Widths in shares of the side column, and long file names broken anywhere
                    # (CSS): with its own widths the table ran each column as wide as the column.
                    documents = gr.Dataframe(headers=["document", "kind, size, from", "added"], column_widths=["40%", "37%", "23%"],
                                             interactive=False, elem_id="documents", wrap=True)
                    search_in = gr.Dropdown(choices=[], value=[], multiselect=True, elem_id="search-in",
                                            label=search_label([]))
                    chosen_doc = gr.Dropdown(choices=[], label="Document", elem_id="document-choice",
                                             info="Choose it here, or click its row in the table.")
                    with gr.Row():
                        reingest = gr.Button("Re-ingest", elem_id="reingest")
                        delete_doc = gr.Button("Delete from ragbot", variant="stop", elem_id="delete-document")
                    # Asks first, as deleting a conversation does: an upload's copy goes with it.
                    delete_doc_check, delete_doc_question, delete_doc_yes, delete_doc_no = deletion_check(
                        "delete-document")
                    doc_to_delete = gr.State(None)
                    library_status = gr.Markdown(elem_id="library-status")
                # Open on a first visit to an empty library, where adding documents comes first;
                # closed once there are documents, so the sources stay in view (on_load sets it).
                with gr.Accordion("Add documents", open=False, elem_id="add-documents") as adder:
                    # file_types: the file dialog offers what ragbot reads, and the page names a
                    # dropped file of another type instead of sending it (on_upload still checks).
                    # Gradio checks the types on the server too: a client other than the page that
                    # sends such a file has its whole batch refused, with Gradio's message.
                    upload = gr.File(file_count="multiple", label=f"PDF, Word (.docx), Markdown, text or HTML (max {max_upload_mb} MB each)",
                                     file_types=readable_suffixes(), elem_id="upload")
                    upload_status = gr.Textbox(label="Upload status", interactive=False, lines=3, elem_id="upload-status",
                                               placeholder="The result of each upload shows here.")

            # Last in the page, first on a wide screen (CSS): a keyboard and a screen reader reach
            # the chat first, then its sources, as the columns stand on a phone, one under another.
            with gr.Column(scale=1, min_width=220, elem_id="conversations-column"):
                past = gr.Radio(choices=[], label="Conversations", elem_id="conversations")
                with gr.Accordion("Rename, export or delete", open=False, elem_id="conversation-tools"):
                    new_title = gr.Textbox(label="New title", elem_id="new-title", max_length=80)
                    rename = gr.Button("Rename", elem_id="rename")
                    export = gr.Button("Export as Markdown", elem_id="export")
                    # Shown once there is a file: empty, it looked like a box to drop files on.
                    exported = gr.File(label="Export", interactive=False, elem_id="exported", visible=False)
                    delete = gr.Button("Delete this conversation", variant="stop", elem_id="delete")
                    # What became of a rename, an export or a delete, said by the buttons (it was
                    # said under the chat, out of sight of the buttons clicked).
                    conversation_status = gr.Markdown(elem_id="conversation-status")
                    # Deleting asks first (it cannot be undone on the page): which conversation
                    # the question was about is kept, so a switch meanwhile deletes nothing. The
                    # question stands above its buttons (it was in the status line, under the chat).
                    delete_check, delete_question, delete_yes, delete_no = deletion_check("delete")
                    to_delete = gr.State(None)

        ask_inputs = [question, chat, conversation, k, temperature, show_all]
        ask_outputs = [chat, sources, question]

        def answer(question, history, conversation_id, k, temperature, show_all, saved, chosen, request,
                   from_box=True):
            """Stream the answer to `question` after `history`; the box says why it is closed
            meanwhile (the release step opens it again). A question from the box empties it; one
            asked again (regenerate, edit) leaves what is being typed there."""
            problem = handlers.question_problem(question)
            sources_, not_stored = handlers.chosen_sources(chosen)
            problem = problem or not_stored
            conversation_id = conversation_id or session_conversation(request)
            if not problem and handlers.answering(session_of(request)):
                problem = "An answer is still being written: wait for it, or stop it first."
            if not problem:
                problem = handlers.start_turn(conversation_id, owner_of(request, saved), question.strip(),
                                              first=turn_of(history) == 1)
            if problem:  # said in a notice; the conversation, its sources and the box stay as they are
                gr.Warning(notice(problem))
                yield gr.skip(), gr.skip(), gr.skip()
                return
            # Asked (a question refused above is not): recorded before any New conversation that
            # this answer's last step meets (new_since_asked).
            handlers.started_asking(session_of(request))
            first_yield, last = True, []
            for history_, html_, _ in handlers.respond(question, history, conversation_id, k, temperature, show_all,
                                                       session=session_of(request),
                                                       user=getattr(request, "username", None), sources=sources_):
                box, shown_ = gr.skip(), history_
                if first_yield:  # the turns kept keep their thumbs; a replaced turn's go with it
                    box = gr.update(interactive=False, placeholder=BUSY, **({"value": ""} if from_box else {}))
                    shown_ = gr.update(value=history_, feedback_value=handlers.votes(history_, session_of(request)))
                first_yield, last = False, history_
                yield shown_, html_, box
            limited = handlers.limited_refusal(last, sources_)
            if limited:
                gr.Info(notice(limited))

        def respond(question, history, conversation_id, k, temperature, show_all, saved, chosen=None,
                    request: gr.Request = None):
            yield from answer(question, history, conversation_id, k, temperature, show_all, saved, chosen, request)

        def asked_again(history, data, question, conversation_id, k, temperature, show_all, saved, chosen, request):
            """Ask `question` in the place of the question at data.index: that turn and every
            turn after it are replaced."""
            at = message_index(history, data.index)  # by position: the same question may be asked twice
            if at is None or history[at].get("role") != "user":
                yield gr.skip(), gr.skip(), gr.skip()
                return
            yield from answer(question, list(history)[:at], conversation_id, k, temperature, show_all, saved, chosen,
                              request, from_box=False)

        def regenerate(history, conversation_id, k, temperature, show_all, saved, chosen, data: gr.RetryData,
                       request: gr.Request):
            asked = message_at(history, data.index)
            yield from asked_again(history, data, message_text(asked or {}), conversation_id, k, temperature,
                                   show_all, saved, chosen, request)

        def edit_and_resend(history, conversation_id, k, temperature, show_all, saved, chosen, data: gr.EditData,
                            request: gr.Request):
            # The edit box starts from the question as the page holds it, escaped (a question has
            # no markup of ours): the entities are read back as the characters they stand for.
            edited = html.unescape(data.value) if isinstance(data.value, str) else message_text({"content": data.value})
            yield from asked_again(history, data, edited, conversation_id, k, temperature, show_all, saved, chosen,
                                   request)

        def release(request: gr.Request):
            """Open the question box again, unless another answer of this session is still being
            written (a regenerate refused meanwhile must not open it)."""
            if handlers.answering(session_of(request)):
                return gr.skip()
            return gr.update(interactive=True, placeholder=READY)

        def listed(conversation_id, saved, request: gr.Request):
            """The conversation list, with the open one selected and remembered by the browser."""
            owner = owner_of(request, saved)
            choices = handlers.conversation_choices(owner)
            chosen = conversation_id if any(c[1] == conversation_id for c in choices) else None
            return conversation_list(choices, chosen), keep(saved, conversation=conversation_id)

        def suggested(label: str):
            """The suggestions for an empty conversation (ChatHandlers.example_questions), under
            `label`; hidden when the documents give none."""
            choices = handlers.example_questions()
            return gr.update(choices=choices, value=None, label=label, visible=bool(choices))

        def ask_suggestion(chosen, history, conversation_id, k, temperature, show_all, saved, searched,
                           request: gr.Request):
            """A clicked suggestion is asked (Gradio sends `input` only for a radio checked), as
            a question asked again is: what is being typed in the box stays. The suggestions go."""
            hide = gr.update(visible=False)
            for shown_ in answer(chosen, history, conversation_id, k, temperature, show_all, saved, searched,
                                 request, from_box=False):
                yield *shown_, hide
                hide = gr.skip()

        def suggestions_after_answer(history, request: gr.Request):
            """Asked: the suggestions go, unless a New conversation came meanwhile. One clicked
            while this answer's last steps were on their way showed its suggestions, and then this
            step hid them (CI rehearsals of 2026-12-07, once in several runs each); the server's
            own order of events decides (new_since_asked)."""
            if not history or handlers.new_since_asked(session_of(request)):
                return gr.skip()
            return gr.update(visible=False)

        again_inputs = [chat, conversation, k, temperature, show_all, browser, search_in]
        for event in (send.click(respond, ask_inputs + [browser, search_in], ask_outputs, api_name="respond"),
                      question.submit(respond, ask_inputs + [browser, search_in], ask_outputs, api_name=False),
                      chat.retry(regenerate, again_inputs, ask_outputs, api_name=False),
                      chat.edit(edit_and_resend, again_inputs, ask_outputs, api_name=False),
                      examples.input(ask_suggestion, [examples, *again_inputs], ask_outputs + [examples],
                                     api_name=False)):
            # The list first: a conversation clicked once the box is open is not then overwritten
            # by a list (and a remembered conversation) still on its way.
            event.then(listed, [conversation, browser], [past, browser], api_name=False
                       ).then(release, None, question, api_name=False).then(lambda: ("", ""), None, [status, conversation_status], api_name=False  # stale
                       ).then(handlers.model_info, None, info, api_name=False
                       ).then(suggestions_after_answer, chat, examples, api_name=False)

        def show_sources_of(history, show, data: gr.SelectData, request: gr.Request):
            """A click on an answer (or one of its [n]) shows that answer's sources, and makes it
            the answer to comment on: the panel and the comment box speak of the same answer."""
            found = handlers.sources_of(history, data.index, session_of(request), show)
            if found is None:
                return gr.skip(), gr.skip()
            return found, gr.update(value=answer_id_of(message_at(history, data.index)))

        chat.select(show_sources_of, [chat, show_all], [sources, which], api_name=False)

        def stop_answer(request: gr.Request):
            return handlers.request_stop(session_of(request))

        stop.click(stop_answer, None, status, api_name=False)

        def on_load(saved, request: gr.Request):
            """A reload or a server restart: the browser's open conversation comes back, with its
            settings; the first visit gets its owner token. An empty one (a first visit, or a New
            conversation not yet asked in) comes with its suggestions: "New here?" only on a first
            visit (no owner token yet, and no conversation: a user logged in on a new browser has
            some), not after a browser deleted its last conversation."""
            saved = dict(saved or {})
            first_visit = not _TOKEN.match(str(saved.get("owner") or ""))
            if first_visit:
                saved["owner"] = uuid.uuid4().hex
            owner = owner_of(request, saved)
            history = handlers.reopen(str(saved.get("conversation") or ""), owner, session_of(request))
            current = str(saved["conversation"]) if history else uuid.uuid4().hex
            saved["conversation"] = current
            choices = handlers.conversation_choices(owner)
            shown_ = gr.update(value=history, feedback_value=handlers.votes(history, session_of(request)))
            return (saved, current, shown_, conversation_list(choices, current if history else None),
                    saved.get("k", bot.settings.top_k), bool(saved.get("show_all", False)),
                    saved.get("temperature", bot.settings.temperature),
                    gr.update(interactive=True, placeholder=READY), gr.update(interactive=True),
                    gr.update(visible=False) if history
                    else suggested(FIRST_VISIT_SUGGESTIONS if first_visit and not choices else NEW_CONVERSATION_SUGGESTIONS))

        def loaded_sources(history, show, request: gr.Request):
            return handlers.latest_sources(history, session_of(request), show)

        app.load(on_load, browser, [browser, conversation, chat, past, k, show_all, temperature, question, send,
                                    examples]).then(loaded_sources, [chat, show_all], sources, api_name=False)

        left_outputs = [exported, delete_check, to_delete, conversation_status]

        def conversation_left(said: str = ""):
            """For left_outputs: what spoke of the conversation left (its export, a delete
            question, what became of a rename), and `said` in its place."""
            return gr.update(value=None, visible=False), gr.update(visible=False), None, said

        def open_past(chosen, saved, show, request: gr.Request):
            history = handlers.reopen(str(chosen or ""), owner_of(request, saved), session_of(request))
            if not history:
                return (gr.skip(),) * 9
            shown_ = gr.update(value=history, feedback_value=handlers.votes(history, session_of(request)))
            return shown_, chosen, handlers.latest_sources(history, session_of(request), show), \
                keep(saved, conversation=chosen), *conversation_left(), gr.update(visible=False)

        past.input(open_past, [past, browser, show_all], [chat, conversation, sources, browser, *left_outputs, examples])

        def rename_current(conversation_id, title, saved, request: gr.Request):
            try:
                handlers.conversations.rename(conversation_id, owner_of(request, saved), title)
            except ConversationError as exc:
                return gr.skip(), f"Not renamed: {exc}.", gr.skip()
            choices = handlers.conversation_choices(owner_of(request, saved))
            return conversation_list(choices, conversation_id), "Renamed.", ""

        rename.click(rename_current, [conversation, new_title, browser], [past, conversation_status, new_title])

        def export_current(conversation_id, saved, request: gr.Request):
            path = handlers.export_conversation(conversation_id, owner_of(request, saved))
            if path is None:
                return gr.update(value=None, visible=False), "Nothing to export: ask a question first."
            # Said, as a rename and a delete are: the file box alone looked like nothing had happened.
            return (gr.update(value=str(path), visible=True),
                    f"Exported as {literal(path.name)}: the ⇣ beside its size above downloads it.")

        export.click(export_current, [conversation, browser], [exported, conversation_status])

        def ask_to_delete(conversation_id, saved, request: gr.Request):
            try:
                title = handlers.conversations.title(conversation_id, owner_of(request, saved))
            except ConversationError:
                return gr.update(visible=False), None, "Nothing to delete: ask a question first.", ""
            return (gr.update(visible=True), conversation_id, "",
                    f"Delete “{literal(title)}”? It leaves your list; its answers stay in the answer log.")

        delete.click(ask_to_delete, [conversation, browser], [delete_check, to_delete, conversation_status,
                                                               delete_question]).then(
            None, None, None, js=scrolled_into_view("delete-check"))

        def delete_current(conversation_id, chosen, saved, request: gr.Request):
            owner = owner_of(request, saved)
            if chosen != conversation_id:
                return (*(gr.skip(),) * 7, gr.update(visible=False), None,
                        "Another conversation is open now: nothing deleted.", gr.skip())
            try:
                handlers.delete_conversation(conversation_id, owner)
            except ConversationError:
                return (*(gr.skip(),) * 7, gr.update(visible=False), None,
                        "Nothing to delete: ask a question first.", gr.skip())
            fresh = uuid.uuid4().hex
            handlers.started_new(session_of(request))  # it shows suggestions, as New conversation does
            # The status under the chat spoke of the conversation deleted (a vote): emptied.
            return (empty_chat(), fresh, conversation_list(handlers.conversation_choices(owner), None),
                    render_sources(None, False), "", keep(saved, conversation=fresh),
                    *conversation_left("Conversation deleted (its answers stay in the answer log)."),  # its export too
                    suggested(NEW_CONVERSATION_SUGGESTIONS))

        delete_yes.click(delete_current, [conversation, to_delete, browser],
                         [chat, conversation, past, sources, status, browser, *left_outputs, examples])
        delete_no.click(lambda: (gr.update(visible=False), None, "Not deleted."), None,
                        [delete_check, to_delete, conversation_status])

        def remember(saved, k_value, show, temp):
            return keep(saved, k=k_value, show_all=show, temperature=temp)

        for control in (k, show_all, temperature):
            control.change(remember, [browser, k, show_all, temperature], browser)

        def like(history, show, data: gr.LikeData, request: gr.Request):
            said = handlers.on_like(history, data.index, data.liked, getattr(request, "username", None),
                                    session=session_of(request))
            # The thumbs as stored, so a later change of the messages can reset them (votes); the
            # one clicked is sent as "" when nothing is stored (a refused vote), not as the None
            # the page had, which would leave the click showing.
            thumbs = gr.update(feedback_value=handlers.votes(history, session_of(request), clicked=data.index))
            # A thumbs-down makes its answer the one to correct, with its sources shown (the box
            # stayed on another answer, which was easy to correct instead: helper-81's drive).
            found = handlers.sources_of(history, data.index, session_of(request), show) if data.liked is False else None
            if found is None:
                return said, thumbs, gr.skip(), gr.skip()
            return (said + " It is now chosen under “Comment on or correct an answer”: write there what it should "
                    "have said.", thumbs,
                    gr.update(value=answer_id_of(message_at(history, data.index))), found)

        chat.like(like, [chat, show_all], [status, chat, which, sources])

        def save(history: list, text: str, fixed: str, chosen: str | None, request: gr.Request):
            said = handlers.on_comment(history, text, fixed, getattr(request, "username", None),
                                       session=session_of(request), answer_id=chosen)
            # Saved fields are emptied, so a second Save cannot attach them to a later answer.
            done = said.startswith(SAVED)
            return said, "" if done else gr.skip(), "" if done else gr.skip()

        def saved_with(history, chosen, request: gr.Request):
            return handlers.saved_feedback(history, chosen, session_of(request))

        save_comment.click(save, [chat, comment, correction, which], [status, comment, correction], api_name="save").then(
            saved_with, [chat, which], saved_feedback, api_name=False, show_progress="hidden")
        # Any change of the choice, the page's own (a new answer) too: what is saved with it.
        which.change(saved_with, [chat, which], saved_feedback, api_name=False, show_progress="hidden")

        def answers_of(history):
            choices = handlers.answer_choices(history)
            return gr.update(choices=choices, value=choices[0][1] if choices else None)

        chat.change(answers_of, chat, which)

        def show_sources_of_chosen(history, chosen, show, request: gr.Request):
            """Choosing the answer to correct shows its sources: a correction cites [n] of that
            answer's passages, not of the answer the panel showed before."""
            found = handlers.sources_of_answer(history, chosen, session_of(request), show)
            return found if found is not None else gr.skip()

        which.input(show_sources_of_chosen, [chat, which, show_all], sources, api_name=False)

        def toggle_all_passages(history, chosen, show, request: gr.Request):
            """"Show all retrieved passages" changes the panel at once, for the answer it shows."""
            return handlers.shown_sources(history, chosen, session_of(request), show)

        show_all.input(toggle_all_passages, [chat, which, show_all], sources, api_name=False)

        def start_new(saved, request: gr.Request):
            fresh = uuid.uuid4().hex
            handlers.started_new(session_of(request))
            # The status line spoke of the conversation left (a vote, a saved correction): emptied.
            # So did the export and a delete question: they were of that conversation.
            return (empty_chat(), render_sources(None, False), fresh, gr.update(value=None),
                    keep(saved, conversation=fresh), "", *conversation_left(), suggested(NEW_CONVERSATION_SUGGESTIONS))

        new_chat.click(start_new, browser, [chat, sources, conversation, past, browser, status, *left_outputs, examples])
        chat.clear(start_new, browser, [chat, sources, conversation, past, browser, status, *left_outputs, examples])
        def library(searched, chosen=None):
            rows, choices, chosen, searched = handlers.shelf(searched, chosen)
            return rows, gr.update(choices=choices, value=chosen), gr.update(choices=choices, value=searched,
                                                                         label=search_label(searched))

        shelf = [documents, chosen_doc, search_in]
        # Emptied once ingested, so the next files dropped there are a new upload.
        def upload_files(files):
            stored = []
            for said in handlers.on_upload(files, stored):
                yield said, stored[-1] if stored else None

        # The library lists by name, so a new upload may sort out of view: it becomes the chosen
        # document, named where Re-ingest and Delete act.
        just_stored = gr.State(None)
        upload.upload(upload_files, upload, [upload_status, just_stored], api_name=False).then(
            lambda searched, chosen, new: library(searched, new or chosen), [search_in, chosen_doc, just_stored],
            shelf, api_name=False).then(lambda: None, None, upload, api_name=False)
        # The documents chosen to search are kept by the browser, as the other settings are: a
        # reload went on searching everything while the user thought the choice still held.
        app.load(lambda saved: library(saved.get("search_in") if isinstance(saved, dict) else None), browser, shelf,
                 api_name=False)
        # Opened, the library is read again: another tab's upload or delete showed only after a reload.
        def library_reread(searched, chosen):
            """The library as stored now, for an opened panel. The choices change; a value only
            when what it named is gone: an upload that was making itself the chosen document
            meanwhile (its own step, on_upload's chain) is not set back to what the panel sent."""
            rows, choices, kept, kept_searched = handlers.shelf(searched, chosen)
            gone = isinstance(chosen, str) and kept is None
            return (rows, gr.update(choices=choices, **({"value": None} if gone else {})),
                    gr.update(choices=choices, **({"value": kept_searched, "label": search_label(kept_searched)}
                                                  if kept_searched != searched else {})))

        library_panel.expand(library_reread, [search_in, chosen_doc], shelf, api_name=False, show_progress="hidden")

        def remember_searched(saved, searched):
            """On every change of the choice, not only a pick: the dropdown's clear button and a
            Backspace change it without an `input` event (a cleared choice came back on reload),
            and a redraw drops a deleted document from it. Written only when it differs, so the
            load's own setting of the value writes nothing."""
            label = gr.update(label=search_label(searched))  # the label, not the value: no change event
            said = gr.update(info=question_info(searched))  # by the question box too
            if not isinstance(saved, dict) or searched == saved.get("search_in", []):
                return gr.skip(), label, said
            return keep(saved, search_in=searched), label, said

        # No progress overlay: Gradio covered the dropdown with one on every pick (it is an output).
        search_in.change(remember_searched, [browser, search_in], [browser, search_in, question], api_name=False,
                         show_progress="hidden")
        app.load(lambda: gr.update(open=not handlers.has_documents()), None, adder, api_name=False)

        def ask_to_delete_document(source):
            asked = handlers.deletion_question(source)
            if asked is None:
                return gr.update(visible=False), None, CHOOSE_FIRST, ""
            return gr.update(visible=True), source, "", asked

        def delete_chosen_document(source, chosen, searched):
            if chosen != source:  # the document asked about, kept on the server, is no longer the one chosen
                return "Another document is chosen now: nothing deleted.", gr.update(visible=False), None
            return handlers.delete_document(source, searched), gr.update(visible=False), None

        delete_doc.click(ask_to_delete_document, chosen_doc,
                         [delete_doc_check, doc_to_delete, library_status, delete_doc_question]).then(
            None, None, None, js=scrolled_into_view("delete-document-check"))
        delete_doc_yes.click(delete_chosen_document, [chosen_doc, doc_to_delete, search_in],
                             [library_status, delete_doc_check, doc_to_delete]).then(library, [search_in, chosen_doc],
                                                                                     shelf)
        # A question about another document would stand over this one's name (the guard in
        # delete_chosen_document deletes nothing then, but the page contradicted itself).
        chosen_doc.change(lambda source, asked: gr.skip() if source == asked else gr.update(visible=False),
                          [chosen_doc, doc_to_delete], delete_doc_check, api_name=False, show_progress="hidden")
        # A row of the table, clicked, chooses its document (the rows looked clickable and did nothing).
        def choose_row(event: gr.SelectData):
            source = handlers.document_in_row(event.index, event.row_value)
            return gr.skip() if source is None else source

        documents.select(choose_row, None, chosen_doc, api_name=False, show_progress="hidden")
        # Once a document is chosen, the prompt to choose one goes (it stayed, under the choice).
        chosen_doc.change(lambda source, said: "" if source and said == CHOOSE_FIRST else gr.skip(),
                          [chosen_doc, library_status], library_status, api_name=False, show_progress="hidden")
        delete_doc_no.click(lambda: ("Not deleted.", gr.update(visible=False), None), None,
                            [library_status, delete_doc_check, doc_to_delete])
        reingest.click(handlers.reingest_document, chosen_doc, library_status).then(library, [search_in, chosen_doc],
                                                                                   shelf)
    # As many answers at once as the generator decodes together (generators/llama_cpp_backend.py),
    # at least 4: retrieval and the extract mode interleave on the CPU.
    app.queue(default_concurrency_limit=max(4, bot.settings.parallel_answers))
    return app


# Defence in depth under the escaping: the page may load scripts, styles, images and fonts from
# its own origin only, and no frames or plugins; an image a document smuggled in is never fetched.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
                           "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
                           "connect-src 'self' ws: wss:; media-src 'self' blob:; frame-src 'none'; object-src 'none'; "
                           "base-uri 'self'; form-action 'self'")


# Gradio's screen-reader status region announces a finished event as `common.complete`, a key
# its English dictionary lacks (gradio 6.31), so screen readers spoke the key itself. Other
# locales fall back to English.
MISSING_TRANSLATIONS = {"common.complete": "Done"}


def serve(bot: RagBot, host: str, port: int, share: bool = False, auth=None, prevent_thread_lock: bool = False):
    """Build the app and serve it. Errors reach the browser as a short notice, never a traceback;
    the footer's API and Gradio links are hidden."""
    import gradio as gr

    limit = bot.settings.max_upload_mb
    app = build_app(bot, max_upload_mb=limit)
    # Only the conversation exports (named by random ids) may be served from the data dir.
    app.launch(server_name=host, server_port=port, share=share, auth=auth, max_file_size=f"{limit}mb",
               allowed_paths=[str(bot.settings.data_dir / "exports")], show_error=False, quiet=True, footer_links=[], css=CSS,
               head=f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">{HIGHLIGHT_SCRIPT}'
                    f'{ACCESSIBLE_NAMES_SCRIPT}{EDIT_ENTER_SCRIPT}',
               i18n=gr.I18n(en=MISSING_TRANSLATIONS), prevent_thread_lock=True)
    add_document_route(app.app, bot, login=auth is not None)
    if not prevent_thread_lock:
        app.block_thread()
    return app


def add_document_route(server, bot: RagBot, login: bool) -> None:
    """GET DOCUMENT_ROUTE/<id>: the stored PDF with that id, shown inline, so a citation's page
    opens in the browser's PDF viewer. Only stored documents are served (the id is looked up, no
    path comes from the client), only PDFs, only while the file is the one that was ingested;
    with `login` (the chat was started with --auth), only to a logged-in user."""
    from fastapi import HTTPException, Request
    from fastapi.responses import FileResponse

    from ragbot.models import sha256_file

    hashes: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: a PDF viewer asks many times

    def logged_in(request: Request) -> bool:
        """Read as Gradio reads its own login cookie; anything unexpected refuses (fails closed)."""
        try:
            token = (request.cookies.get(f"access-token-{server.cookie_id}")
                     or request.cookies.get(f"access-token-unsecure-{server.cookie_id}"))
            return token is not None and server.tokens.get(token) is not None
        except AttributeError:
            return False

    def unchanged(path: Path, expected: str) -> bool:
        try:
            info = path.stat()
        except OSError:
            return False
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in hashes:
            hashes[key] = sha256_file(path)
        return hashes[key] == expected

    def document(doc_id: int, request: Request):  # a plain def: FastAPI runs it off the event loop
        if login and not logged_in(request):
            raise HTTPException(401, "log in first")
        doc = bot.store.document_by_id(doc_id)
        if doc is None or doc.kind != "pdf":
            raise HTTPException(404, "no such PDF is stored")
        path = Path(doc.source)
        if not path.is_file() or not unchanged(path, doc.sha256):
            raise HTTPException(410, f"{path.name} changed or moved since it was ingested: ingest it again")
        return FileResponse(path, media_type="application/pdf", content_disposition_type="inline",
                            filename=path.name, headers={"X-Content-Type-Options": "nosniff"})

    server.add_api_route(DOCUMENT_ROUTE + "/{doc_id}", document, methods=["GET"], include_in_schema=False)


# Names Gradio gives that a screen reader speaks, set right by one observer of the page:
# - Each chat message is labelled with its raw content ("bot's message: ... [<a class=
#   "ragbot-cite" href="#source-1">1</a>]", "R&amp;D"), so a reader spoke the citation links'
#   tags and entity names. The label is replaced by its text ("... [1]"); text a user or a
#   document wrote is escaped in the content, and the label is only ever set as text. A label
#   set here is not read again.
# - A chosen document's ✕ in a multiselect is titled "Remove 2" (the choice's index), which the
#   mouse shows and a reader speaks: it names the document instead.
# - A group of radio buttons (the conversations, the suggestions) is a fieldset whose label is a
#   span, not a legend, so a reader announced a group without a name: it is named by that span.
ACCESSIBLE_NAMES_SCRIPT = """<script>
(() => {
  const set = new WeakMap();
  const messageLabel = el => {
    const label = el.getAttribute('aria-label');
    if (!label || !/^[\\w ]+'s message: /.test(label) || !/[<&]/.test(label) || set.get(el) === label) return;
    const text = new DOMParser().parseFromString(label, 'text/html').body.textContent;
    set.set(el, text);
    el.setAttribute('aria-label', text);
  };
  const removeTitle = el => {
    if (!el.matches('.token > .token-remove:not(.remove-all)')) return;
    const text = el.parentElement.querySelector(':scope > span');
    const title = text && 'Remove ' + text.textContent.trim();
    if (!title || el.getAttribute('title') === title) return;
    el.setAttribute('title', title);
    el.setAttribute('aria-label', title);
  };
  const groupName = el => {
    const named = el.getAttribute && el.getAttribute('aria-labelledby');
    if (!el.matches('fieldset[id]') || (named && document.getElementById(named))) return;
    const label = el.querySelector(':scope > [data-testid="block-info"]');
    if (!label) return;
    label.id = label.id || el.id + '-label';
    el.setAttribute('aria-labelledby', label.id);
  };
  const fix = el => { if (el.getAttribute) { messageLabel(el); removeTitle(el); groupName(el); } };
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes') fix(r.target);
      else r.addedNodes.forEach(n => { if (n.nodeType === 1) { fix(n); n.querySelectorAll('[aria-label], .token-remove, fieldset[id]').forEach(fix); } });
    }
  }).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                         attributeFilter: ['aria-label', 'title']});
})();
</script>"""


# Enter sends an edited question, as it sends one typed in the question box (Shift+Enter: a new
# line); in Gradio's edit box it only broke the line, and the edit was sent by its Submit button
# alone. Not while an input method is composing (Enter picks the characters there).
EDIT_ENTER_SCRIPT = """<script>
document.addEventListener('keydown', e => {
  if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
  const box = e.target.closest && e.target.closest('#chat textarea.edit-textarea');
  const submit = box && document.querySelector('#chat button[aria-label="Submit"]');
  if (!submit || submit.disabled) return;
  e.preventDefault();
  submit.click();
}, true);
</script>"""


# A click on a citation [n] highlights passage n in the sources panel and scrolls to it; for an
# older answer the panel first changes to that answer's sources (chat.select), so the passage
# is marked again when the panel changes within a few seconds of the click.
HIGHLIGHT_SCRIPT = """<script>
(() => {
  let wanted = null;
  const mark = () => {
    if (!wanted || Date.now() - wanted.at > 5000) return;
    document.querySelectorAll('.ragbot-highlight').forEach(e => e.classList.remove('ragbot-highlight'));
    const row = document.querySelector('#sources #source-' + wanted.n);
    if (!row) return;
    row.classList.add('ragbot-highlight');
    // A row already in view stays where it is; one out of view is brought to the middle (its top,
    // when it is taller than the window), not to the window's edge where it was easy to miss.
    const box = row.getBoundingClientRect();
    const inView = box.top >= 0 && box.bottom <= window.innerHeight;
    row.scrollIntoView({block: inView ? 'nearest' : box.height > window.innerHeight ? 'start' : 'center'});
  };
  document.addEventListener('click', e => {
    const link = e.target.closest && e.target.closest('a.ragbot-cite');
    if (!link) return;
    e.preventDefault();
    wanted = {n: link.getAttribute('href').replace('#source-', ''), at: Date.now()};
    mark();
  }, true);
  const watch = () => {
    const panel = document.getElementById('sources');
    if (panel) new MutationObserver(mark).observe(panel, {childList: true, subtree: true, characterData: true});
    return !!panel;
  };
  if (!watch()) {
    const early = new MutationObserver(() => { if (watch()) early.disconnect(); });
    early.observe(document.documentElement, {childList: true, subtree: true});
  }
})();
</script>"""
