"""Conversations belong to their owner: listed, reopened, renamed, exported and deleted only by it."""

import html
import json
import re

import pytest
from conftest import ROOT
from markdown_it import MarkdownIt

from ragbot.interfaces.app import owner_of
from ragbot.interfaces.handlers import ChatHandlers
from ragbot.interfaces.rendering import message_text
from ragbot.interfaces.conversations import ConversationError, Conversations


def test_a_conversation_is_its_owners_only(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    conversations = Conversations(bot.store)
    conversations.touch("c1", "browser:ann", "  Where is the   Eiffel Tower? ")
    first = bot.ask("Where is the Eiffel Tower?", conversation_id="c1", turn=1)
    conversations.touch("c1", "browser:ann", "When was it completed?")
    bot.ask("When was it completed?", conversation_id="c1", turn=2)
    [listed] = conversations.list("browser:ann")
    assert (listed.id, listed.title, listed.turns) == ("c1", "Where is the Eiffel Tower?", 2)
    turns = conversations.turns("c1", "browser:ann")
    assert [t.question for t in turns] == ["Where is the Eiffel Tower?", "When was it completed?"]
    assert turns[0].answer_id == first.id

    assert conversations.list("browser:mallory") == []
    for attempt in (lambda: conversations.turns("c1", "browser:mallory"),
                    lambda: conversations.touch("c1", "browser:mallory", "hijack"),
                    lambda: conversations.rename("c1", "browser:mallory", "mine"),
                    lambda: conversations.delete("c1", "browser:mallory"),
                    lambda: conversations.export("c1", "browser:mallory")):
        with pytest.raises(ConversationError, match="no such conversation"):
            attempt()

    conversations.rename("c1", "browser:ann", "Paris")
    assert conversations.list("browser:ann")[0].title == "Paris"
    exported = json.loads(conversations.export("c1", "browser:ann", "json"))
    assert exported["title"] == "Paris" and len(exported["turns"]) == 2
    assert conversations.export("c1", "browser:ann").startswith("# Paris\n")
    conversations.delete("c1", "browser:ann")
    assert conversations.list("browser:ann") == []
    with pytest.raises(ConversationError):
        conversations.turns("c1", "browser:ann")
    assert bot.feedback.answer_trace(first.id)["question"] == "Where is the Eiffel Tower?"  # the log keeps it


def test_a_title_made_from_the_first_question_follows_its_edit_and_a_given_one_stays(make_bot, docs):
    """Editing the first question left the conversation named after the question it replaced."""
    bot = make_bot()
    bot.ingest([docs])
    conversations = Conversations(bot.store)
    conversations.touch("c1", "browser:ann", "Where is the Eiffel Tower?")
    bot.ask("Where is the Eiffel Tower?", conversation_id="c1", turn=1)
    conversations.touch("c1", "browser:ann", "When was it finished?")
    bot.ask("When was it finished?", conversation_id="c1", turn=2)
    conversations.touch("c1", "browser:ann", "When was it  started?")  # the second turn edited
    bot.ask("When was it started?", conversation_id="c1", turn=2)
    assert conversations.title("c1", "browser:ann") == "Where is the Eiffel Tower?"
    conversations.touch("c1", "browser:ann", "Where is Mount Etna?", first=True)  # the first one edited
    bot.ask("Where is Mount Etna?", conversation_id="c1", turn=1)
    assert conversations.title("c1", "browser:ann") == "Where is Mount Etna?"
    conversations.rename("c1", "browser:ann", "Volcanoes")
    conversations.touch("c1", "browser:ann", "Is Mount Etna active?", first=True)
    assert conversations.title("c1", "browser:ann") == "Volcanoes"  # the owner's own title stays
    # A first question stopped before its answer was logged gives way to the one asked in its place.
    conversations.touch("c2", "browser:ann", "Where is the Eiffel Tower?")
    conversations.touch("c2", "browser:ann", "Where is Mount Etna?", first=True)
    assert conversations.title("c2", "browser:ann") == "Where is Mount Etna?"


def test_reopening_issues_the_answers_to_the_session_so_they_can_be_voted_on(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    assert handlers.start_turn("c2", "browser:ann", "Where is Mount Etna?") is None
    *_, (history, _, _) = handlers.respond("Where is Mount Etna?", [], "c2", 5, 0.0, False, session="tab1")
    reopened = handlers.reopen("c2", "browser:ann", session="tab2")  # a reload: a new session
    assert [m["role"] for m in reopened] == ["user", "assistant"]
    assert reopened[1]["metadata"]["id"] == history[1]["metadata"]["id"]
    assert handlers.on_like(reopened, 1, True, session="tab2") == "Thanks: marked helpful."
    assert handlers.reopen("c2", "browser:mallory", session="tab3") == []
    assert handlers.start_turn("c2", "browser:mallory", "hijack").startswith("This conversation cannot be continued")


class _Request:
    def __init__(self, username=None, session_hash="s"):
        self.username, self.session_hash = username, session_hash


def test_owner_is_the_user_else_a_well_formed_browser_token():
    token = "0123456789abcdef0123456789abcdef"
    assert owner_of(_Request(username="ann"), {"owner": token}) == "user:ann"
    assert owner_of(_Request(), {"owner": token}) == f"browser:{token}"
    assert owner_of(_Request(session_hash="h"), {"owner": "../../etc"}) == "session:h"  # not trusted
    assert owner_of(_Request(session_hash="h"), None) == "session:h"


def test_example_questions_come_from_the_users_documents(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    examples = ChatHandlers(bot).example_questions()
    assert examples and all(q.endswith("?") for q in examples)
    names = ("Etna", "Croissants", "Paris", "Food", "Bananas", "Volcano", "Eiffel")  # the documents' terms
    assert all(any(name.lower() in q.lower() for name in names) for q in examples), examples
    assert len(examples) == len(set(examples)) >= 2  # from different documents


def test_the_document_ingested_last_is_suggested_about_first(make_bot, tmp_path):
    """A file just added to a library of others is suggested about (helper-79's drive: after an
    upload, every suggestion still came from the shipped corpus). Its one question is a
    section's, which came after every other document's definitions."""
    bot = make_bot()
    bot.ingest(sorted((ROOT / "corpus").glob("*.md")))
    wine = tmp_path / "wine.md"
    wine.write_text("# Wine of Etna\n\n## Harvest\n\nIn October the growers pick the grapes by hand on the "
                    "slopes of the volcano, and the must ferments in old chestnut barrels.\n")
    bot.ingest([wine])
    handlers = ChatHandlers(bot)
    for _ in range(3):  # the sample is random: each draw suggests about it first
        examples = handlers.example_questions()
        assert len(examples) == 3 and "Wine of Etna" in examples[0], examples
        assert not any("Wine of Etna" in q for q in examples[1:]), examples  # one per document


def test_a_suggestion_finds_the_passage_it_was_made_from(corpus_bot, monkeypatch):
    """"What is the loss?" (made from one document's "The loss is ...") finds other documents'
    losses closer: a vague suggestion, no longer offered; a definition that finds its own
    passage is."""
    import random

    monkeypatch.setattr(random, "shuffle", lambda items: items.sort(key=lambda c: c.question != "What is the loss?"))
    examples = ChatHandlers(corpus_bot).example_questions(n=10)
    assert "What is the loss?" not in examples and "What is a large language model (LLM)?" in examples, examples
    from ragbot.learn.trainset import structural_questions

    ids = [r[0] for r in corpus_bot.store._db.execute("SELECT id FROM chunks")]
    made_from = {}  # (overlapping chunks may make one question twice)
    for c in structural_questions(list(corpus_bot.store.chunks(ids).values())):
        made_from.setdefault(c.question, set()).add(c.chunk_id)
    for question in examples:
        found = corpus_bot.search(question)
        assert found[0].chunk_id in made_from[question] and found[0].score == max(p.score for p in found)


def test_asking_a_turn_again_replaces_it_and_the_turns_after_it(make_bot, docs):
    """Regenerate and edit-and-resend ask a question in its old place: the stored conversation
    then reads as the page showed it (the log keeps every answer)."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    history: list = []
    for question in ("Where is the Eiffel Tower?", "Where is Mount Etna?", "What color are bananas?"):
        handlers.start_turn("c3", "browser:ann", question)
        *_, (history, _, _) = handlers.respond(question, history, "c3", 5, 0.0, False, session="s")
    handlers.start_turn("c3", "browser:ann", "When was the Eiffel Tower completed?")
    *_, (edited, _, _) = handlers.respond("When was the Eiffel Tower completed?", history[:2], "c3", 5, 0.0, False,
                                          session="s")  # turn 2 edited: turn 3 goes with the old turn 2
    turns = handlers.conversations.turns("c3", "browser:ann")
    assert [t.question for t in turns] == ["Where is the Eiffel Tower?", "When was the Eiffel Tower completed?"]
    assert turns[1].answer_id == edited[-1]["metadata"]["id"]
    *_, (again, _, _) = handlers.respond("Where is the Eiffel Tower?", [], "c3", 5, 0.0, False, session="s")
    turns = handlers.conversations.turns("c3", "browser:ann")  # turn 1 regenerated: one turn left
    assert [t.answer_id for t in turns] == [again[-1]["metadata"]["id"]]
    assert bot.store._db.execute("SELECT COUNT(*) FROM answers WHERE conversation_id = 'c3'").fetchone()[0] == 5


def test_a_stopped_answer_takes_no_turn(make_bot, docs):
    """A stopped answer is not stored: the next question is the next stored turn, so asking it
    again later replaces that question, not one before it."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    handlers.start_turn("c4", "browser:ann", "Where is the Eiffel Tower?")
    *_, (history, _, _) = handlers.respond("Where is the Eiffel Tower?", [], "c4", 5, 0.0, False, session="s")
    history = history + [{"role": "user", "content": "Where is Mount Etna?"}, {"role": "assistant", "content": "It …"}]
    *_, (history, _, _) = handlers.respond("What color are bananas?", history, "c4", 5, 0.0, False, session="s")
    *_, (again, _, _) = handlers.respond("What color are bananas?", history[:4], "c4", 5, 0.0, False, session="s")
    turns = handlers.conversations.turns("c4", "browser:ann")
    assert [t.question for t in turns] == ["Where is the Eiffel Tower?", "What color are bananas?"]
    assert turns[1].answer_id == again[-1]["metadata"]["id"]


def test_conversations_that_read_alike_are_told_apart_in_the_list(make_bot, docs):
    """Two chats started with the same question within a minute would show the same label."""
    handlers = ChatHandlers(make_bot())
    for conversation_id in ("c1", "c2", "c3"):
        handlers.conversations.touch(conversation_id, "browser:ann", "What is RAG?")
    handlers.conversations.touch("c4", "browser:ann", "Who made it?")
    with handlers.bot.store.transaction() as db:  # all in one minute, whenever the test runs
        db.execute("UPDATE conversations SET updated_at = 1.8e9 + rowid")
    choices = handlers.conversation_choices("browser:ann")
    labels = [label for label, _ in choices]
    assert len(set(labels)) == 4 and {cid for _, cid in choices} == {"c1", "c2", "c3", "c4"}
    label_of = {cid: label for label, cid in choices}
    # The oldest first; the number follows the title (after the time, it read as part of it).
    assert [label_of[cid].split(" · ")[0] for cid in ("c1", "c2", "c3")] == [
        "What is RAG? (1)", "What is RAG? (2)", "What is RAG? (3)"]
    assert not any("(" in label for label in labels if label.startswith("Who made it?"))


def test_an_export_lists_each_answers_sources_shows_text_as_text_and_goes_with_its_conversation(make_bot, docs):
    """The Markdown export names the passage behind each [n] (a newcomer's export had bare [1]s),
    shows a title or question holding HTML or a link as text, is named after the conversation's
    title, and is deleted with the conversation; an id the page did not make exports nothing."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    conversation = "0123456789abcdef0123456789abcdef"
    question = ("Where is the Eiffel Tower? <img src=x onerror=alert(1)> [x](javascript:alert(2)) "
                "*not* __this__ `nor` ~~that~~ \\*or\\* this*")
    handlers.start_turn(conversation, "browser:ann", question)
    *_, (history, _, _) = handlers.respond(question, [], conversation, 5, 0.0, False, session="s")
    assert "[1]" in message_text(history[-1])
    # What the user said of the answer goes with it (an export read as if every answer stood).
    bot.feedback.set_feedback(history[-1]["metadata"]["id"], -1, "too *short*", "In Paris, on the Champ de Mars.")
    handlers.conversations.rename(conversation, "browser:ann", "Paris <b>trip</b>/notes")
    path = handlers.export_conversation(conversation, "browser:ann")
    assert path.parent == handlers.exports / conversation and path.name == "Paris _b_trip__b__notes.md"
    text = path.read_text()
    assert text.startswith("# Paris &lt;b&gt;trip&lt;/b&gt;/notes\n")
    assert "&lt;img src=x onerror=alert(1)&gt; [x]\\(javascript:alert(2))" in text and "<img" not in text
    assert "\n- [1] paris.md: “Paris — The Eiffel Tower is in Paris." in text  # the heading's title, not "# Paris"
    assert ("*Your vote:* thumbs down\n\n*Your comment:* too \\*short\\*\n\n"
            "*Your correction:* In Paris, on the Champ de Mars.\n") in text
    # Rendered, the question's marks are text (it rendered "*not*" in italics): the only markup
    # is the export's own, a bold label before each question and answer.
    rendered = MarkdownIt("commonmark").enable("strikethrough").render(text)
    assert re.findall(r"<(\w+)", rendered.split("<ul>")[0]) == ["h1", "p", "strong", "p", "strong"] + ["p", "em"] * 3 + ["p"], rendered
    assert "*not* __this__ `nor` ~~that~~ \\*or\\* this*" in html.unescape(rendered)
    # An "&" reads as written, raw and rendered ("Alder &amp; Sons" in helper-89's export); one
    # that would begin a character reference is escaped, so it renders as written too.
    handlers.conversations.rename(conversation, "browser:ann", "Alder & Sons, AT&T &copy; &#60;b> &#x3c;")
    exported_md = handlers.conversations.export(conversation, "browser:ann")
    assert exported_md.startswith("# Alder & Sons, AT&T &amp;copy; &amp;#60;b&gt; &amp;#x3c;\n")
    assert html.unescape(re.sub(r"</?h1>", "", MarkdownIt("commonmark").render(exported_md).split("\n")[0])) == \
        "Alder & Sons, AT&T &copy; &#60;b> &#x3c;"
    # A title ending in "#" was exported as "Issue": the "#" was read as the heading's closing mark.
    handlers.conversations.rename(conversation, "browser:ann", "Issue #")
    exported_md = handlers.conversations.export(conversation, "browser:ann")
    assert MarkdownIt("commonmark").render(exported_md).startswith("<h1>Issue #</h1>")
    exported = json.loads(handlers.conversations.export(conversation, "browser:ann", "json"))
    assert exported["turns"][0]["sources"][0]["document"] == "paris.md"
    assert exported["turns"][0]["feedback"] == {"vote": -1, "comment": "too *short*",
                                                "correction": "In Paris, on the Champ de Mars."}

    handlers.conversations.rename(conversation, "browser:ann", "Paris")
    assert handlers.export_conversation(conversation, "browser:ann").name == "Paris.md"
    assert [p.name for p in (handlers.exports / conversation).iterdir()] == ["Paris.md"]  # the old name is gone
    assert handlers.export_conversation(conversation, "browser:mallory") is None
    handlers.delete_conversation(conversation, "browser:ann")
    assert not (handlers.exports / conversation).exists()

    handlers.start_turn("../c5", "browser:ann", "Where is Mount Etna?")
    handlers.respond("Where is Mount Etna?", [], "../c5", 5, 0.0, False, session="s")
    assert handlers.export_conversation("../c5", "browser:ann") is None
