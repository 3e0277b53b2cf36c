"""The browser chat UI (Gradio). A thin layer: handlers translate between the page and RagBot.

No `from __future__ import annotations` here: Gradio reads the real type hints of event
handlers (gr.LikeData, gr.Request) to know what to inject.

Handlers are plain methods of `ChatHandlers` so tests can call them without a browser. Every
assistant message carries its answer's id in its metadata; a vote reads that id from the
message itself, so feedback can never land on the wrong answer.
"""


import html
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .answer import passage_header
from .bot import RagBot
from .errors import RagbotError
from .readers import kind_of, supported_suffixes
from .types import Answer

FOLLOW_UP_WORDS = {"it", "its", "they", "them", "their", "this", "that", "these", "those", "he", "she",
                   "him", "his", "her", "there", "also", "else", "more"}
MAX_HISTORY_TURNS = 2
DEFAULT_MAX_UPLOAD_MB = 50  # the max_upload_mb setting's default


def standalone_query(previous_questions: list[str], question: str) -> str:
    """The retrieval query for a question in a conversation.

    A follow-up ("why is it slow?", "and VAEs?") names its subject in an earlier turn, so when
    the question is very short (three words or fewer), starts with "and" / "what about", or uses
    a pronoun or follow-up word, the previous question is put in front of it. Otherwise the
    question stands alone. (The default 135M generator is too weak to rewrite questions itself.)
    """
    if not previous_questions:
        return question
    words = re.findall(r"[a-z']+", question.lower())
    text = " ".join(words)
    follow_up = (len(words) <= 3 or any(w in FOLLOW_UP_WORDS for w in words)
                 or text.startswith(("and ", "what about", "how about")))
    return f"{previous_questions[-1]} {question}" if follow_up else question


def message_text(message: dict) -> str:
    """A chat message's text: Gradio hands content back as a list of parts, we send strings."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def safe_upload_name(name: str) -> str:
    """A file name that cannot leave the uploads folder: no separators, no dots in front."""
    base = os.path.basename(name.replace("\\", "/"))
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")
    return base[:120] or "upload"


def render_sources(answer: Answer | None, show_all: bool) -> str:
    """HTML for the sources panel; every text from documents is escaped, never interpreted."""
    if answer is None:
        return "<p class='ragbot-muted'>Sources of the answer appear here.</p>"
    if answer.refused and not show_all:
        return f"<p>No source: {html.escape(REFUSAL_NOTES.get(answer.refusal_reason or '', 'declined'))}.</p>"
    cited = {c.n for c in answer.citations}
    rows = []
    for p in answer.passages:
        if not show_all and p.rank not in cited:
            continue
        page = f", page {p.page}" if p.page is not None else ""
        mark = "cited" if p.rank in cited else "retrieved"
        snippet = p.text if len(p.text) <= 400 else p.text[:400] + " …"
        rows.append(
            f"<div class='ragbot-source' data-rank='{p.rank}'><b>[{p.rank}]</b> "
            f"{html.escape(Path(p.source).name)}{html.escape(page)} "
            f"<span class='ragbot-muted'>({html.escape(passage_header(p))}; score {p.score:.2f}; {mark})</span>"
            f"<blockquote>{html.escape(snippet)}</blockquote></div>"
        )
    return "".join(rows) or "<p>The answer cites no passage.</p>"


REFUSAL_NOTES = {
    "low_retrieval_score": "no passage in your documents is close enough to the question",
    "passages_lack_answer": "the retrieved passages do not seem to hold the answer (the tuned model's answerability check)",
    "model_said_so": "the model found no answer in the retrieved passages",
    "unsupported_answer": "the model's reply was not supported by any retrieved passage",
    "invented_number": "the model's reply stated a number that no retrieved passage states",
    "asked_fact_missing": "the question asks for a number or a name, and the reply gave none that the passages state",
}


class ChatHandlers:
    def __init__(self, bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
        self.bot = bot
        self.max_upload_bytes = max_upload_mb * 1024 * 1024
        self.uploads = bot.settings.data_dir / "uploads"

    def model_info(self) -> str:
        generator = self.bot.settings.generator
        adapter = self.bot.generator.adapter if self.bot._generator else None
        return f"Model: **{generator}**, adapter: **{adapter or 'none'}**"

    def respond(
        self, question: str, history: list[dict], conversation_id: str, k: int, temperature: float, show_all: bool,
    ) -> Iterator[tuple[list[dict], str, str]]:
        """Stream an answer: yields (chat history, sources HTML, cleared input box)."""
        question = (question or "").strip()
        history = list(history or [])
        if not question:
            yield history, render_sources(None, show_all), ""
            return
        previous = [message_text(m) for m in history if m["role"] == "user"]
        turn = len(previous) + 1
        query = standalone_query(previous, question)
        history.append({"role": "user", "content": question})
        history.append({"role": "assistant", "content": ""})
        text = ""
        answer = None
        for event in self.bot.ask_stream(question, k=int(k), temperature=float(temperature), conversation_id=conversation_id,
                                         turn=turn, retrieval_query=query, history=self._history_messages(history[:-2])):
            if isinstance(event, str):
                text += event
                history[-1] = {"role": "assistant", "content": text}
                yield history, "<p class='ragbot-muted'>Answering…</p>", ""
            else:
                answer = event
        assert answer is not None
        history[-1] = {"role": "assistant", "content": answer.answer, "metadata": {"id": answer.id}}
        yield history, render_sources(answer, show_all), ""

    @staticmethod
    def _history_messages(history: list[dict]) -> list[dict]:
        """The last turns of the conversation, as plain chat messages for the prompt."""
        messages = [{"role": m["role"], "content": message_text(m)} for m in history]
        return [m for m in messages if m["content"]][-2 * MAX_HISTORY_TURNS :]

    def on_like(self, history: list[dict], index, liked, user: str | None = None) -> str:
        """Record a vote from the like event: +1, -1, or removal ('' / None)."""
        position = index[0] if isinstance(index, (list, tuple)) else index
        message = history[position]
        answer_id = (message.get("metadata") or {}).get("id")
        if not answer_id:
            return "This message has no recorded answer to rate."
        vote = 1 if liked is True else -1 if liked is False else None
        current = self.bot.feedback.feedback(answer_id)
        self.bot.feedback.set_feedback(answer_id, vote, current.comment if current else None,
                                       current.correction if current else None, user)
        self.last_rated = answer_id
        return {1: "Thanks: marked helpful.", -1: "Thanks: marked unhelpful.", None: "Vote removed."}[vote]

    def on_comment(self, history: list[dict], comment: str, correction: str, user: str | None = None) -> str:
        """Attach a comment and/or corrected answer to the latest answer in the conversation."""
        answer_id = next((m["metadata"]["id"] for m in reversed(history or [])
                          if m["role"] == "assistant" and (m.get("metadata") or {}).get("id")), None)
        if answer_id is None:
            return "Ask a question first."
        if not (comment or "").strip() and not (correction or "").strip():
            return "Write a comment or a corrected answer first."
        current = self.bot.feedback.feedback(answer_id)
        self.bot.feedback.set_feedback(answer_id, current.vote if current else None, comment, correction, user)
        return "Saved with the latest answer."

    def on_upload(self, files: list[str] | None) -> Iterator[str]:
        """Ingest uploaded files with the same code and messages as `ragbot ingest`."""
        if not files:
            yield "No file chosen."
            return
        self.uploads.mkdir(parents=True, exist_ok=True)
        accepted, problems = [], []
        for path in files:
            source = Path(path)
            name = safe_upload_name(source.name)
            if kind_of(Path(name)) is None:
                problems.append(f"{name}: unsupported file type; supported: {supported_suffixes()}")
                continue
            if source.stat().st_size > self.max_upload_bytes:
                problems.append(f"{name}: larger than the {self.max_upload_bytes // 2**20} MiB upload limit")
                continue
            target = self.uploads / name
            shutil.copyfile(source, target)
            accepted.append(target)
        lines = [f"failed: {p}" for p in problems]
        if accepted:
            yield "\n".join(lines + [f"Ingesting {len(accepted)} file(s)…"])
            try:
                report = self.bot.ingest(accepted)
            except RagbotError as exc:
                yield "\n".join(lines + [f"failed: {exc}"])
                return
            for path, reason in report.failed:
                (target := Path(path)).unlink(missing_ok=True)
                lines.append(f"failed: {target.name}: {reason}")
            lines.append(report.summary())
        yield "\n".join(lines)


CSS = """
.ragbot-muted { color: #6b7280; font-size: 0.9em; }
.ragbot-source blockquote { margin: 4px 0 12px 0; padding-left: 8px; border-left: 3px solid #d1d5db; white-space: pre-wrap; }
"""


def build_app(bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    handlers = ChatHandlers(bot, max_upload_mb)
    with gr.Blocks(title="ragbot", analytics_enabled=False) as app:
        conversation = gr.State(lambda: uuid.uuid4().hex)
        gr.Markdown("## ragbot — answers from your documents, with sources")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", height=480, sanitize_html=True, render_markdown=False,
                                  elem_id="chat", feedback_options=("Like", "Dislike"))
                question = gr.Textbox(label="Question", placeholder="Ask about your documents…", elem_id="question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask")
                    new_chat = gr.Button("New conversation")
                status = gr.Markdown(elem_id="status")
                with gr.Accordion("Comment or correct the latest answer", open=False):
                    comment = gr.Textbox(label="Comment", elem_id="comment")
                    correction = gr.Textbox(label="Corrected answer", elem_id="correction")
                    save_comment = gr.Button("Save")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(render_sources(None, False), elem_id="sources")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    k = gr.Slider(1, 20, value=bot.settings.top_k, step=1, label="Passages to retrieve")
                    show_all = gr.Checkbox(False, label="Show all retrieved passages", elem_id="show-all")
                    temperature = gr.Slider(0.0, 1.5, value=bot.settings.temperature, step=0.05, label="Temperature")
                    info = gr.Markdown(handlers.model_info())
                with gr.Accordion("Add documents", open=True):
                    upload = gr.File(file_count="multiple", label=f"PDF, Markdown, text or HTML (max {max_upload_mb} MB each)",
                                     elem_id="upload")
                    upload_status = gr.Textbox(label="Upload", interactive=False, lines=3, elem_id="upload-status")

        ask_inputs = [question, chat, conversation, k, temperature, show_all]
        ask_outputs = [chat, sources, question]
        send.click(handlers.respond, ask_inputs, ask_outputs).then(handlers.model_info, None, info)
        question.submit(handlers.respond, ask_inputs, ask_outputs).then(handlers.model_info, None, info)

        def like(history, data: gr.LikeData, request: gr.Request):
            return handlers.on_like(history, data.index, data.liked, getattr(request, "username", None))

        chat.like(like, chat, status)

        def save(history: list, text: str, fixed: str, request: gr.Request):
            return handlers.on_comment(history, text, fixed, getattr(request, "username", None))

        save_comment.click(save, [chat, comment, correction], status)
        new_chat.click(lambda: ([], render_sources(None, False), uuid.uuid4().hex), None, [chat, sources, conversation])
        upload.upload(handlers.on_upload, upload, upload_status)
    app.queue(default_concurrency_limit=4)
    return app
