"""Corrections change answers at once: the corrected question and its paraphrases get the user's
answer, an unrelated question does not, and a thumbs-down stops the rejected sentence coming back."""

import numpy as np
import pytest

from conftest import CORPUS
from ragbot.answer import corrections
from ragbot.answer.generation import REFUSAL
from ragbot.interfaces.handlers import ChatHandlers
from ragbot.interfaces.rendering import CORRECTION_MARK, literal, message_text, render_sources
from ragbot.answer.corrections import Correction, CorrectionMemory


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fit_sits_at_the_quantile_of_closest_questions_about_other_documents():
    rng = np.random.default_rng(0)
    # Two documents, 20 questions each, clustered around two directions.
    a = _unit(np.array([1.0, 0.0, 0.0]) + 0.3 * rng.standard_normal((20, 3)))
    b = _unit(np.array([0.0, 1.0, 0.0]) + 0.3 * rng.standard_normal((20, 3)))
    vectors = np.vstack([a, b])
    docs = ["a"] * 20 + ["b"] * 20
    fitted = corrections.fit(vectors, docs, false_match=0.05)
    cross = vectors @ vectors.T
    cross[np.equal.outer(docs, docs)] = -np.inf
    closest = cross.max(axis=1)
    assert fitted.threshold == pytest.approx(np.quantile(closest, 0.95))
    # at most ~5% of the questions reach it from another document
    assert (closest >= fitted.threshold).mean() <= 0.05 + 1 / 40
    assert fitted.fit_report["documents"] == 2


def test_fit_needs_several_documents():
    with pytest.raises(corrections.CorrectionsError, match="documents"):
        corrections.fit(_unit(np.eye(12)), ["one"] * 12)


class _Embedder:
    """Vectors by hand: each text maps to a direction."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return _unit([self.table[t] for t in texts])


def test_memory_matches_the_closest_question_and_the_newest_feedback_wins():
    embedder = _Embedder({"q1": [1, 0, 0], "Q1 ": [1, 0, 0], "q2": [0, 1, 0]})
    items = [Correction("old", "q1", "wrong", "first fix", at=1.0),
             Correction("new", "Q1 ", "wrong", "second fix", at=2.0),
             Correction("other", "q2", "bad", None, at=1.5)]
    memory = CorrectionMemory.build(items, embedder, threshold=0.9)
    assert len(memory) == 2  # "q1" and "Q1 " are one question
    found = memory.match(_unit([[1, 0.1, 0]])[0])
    assert found.correction.correction == "second fix" and found.similarity > 0.9
    assert memory.match(_unit([[1, 1, 0]])[0]) is None  # 0.71 to both: below the threshold
    assert memory.match(_unit([[0, 0, 1]])[0]) is None


def test_a_follow_ups_correction_needs_the_follow_up_too():
    """A follow-up is searched with the question before it, so its query alone is close to that
    first question: its correction must not answer the first question asked again."""
    embedder = _Embedder({"what is rag? who introduced it?": [1, 0.3, 0], "who introduced it?": [0, 1, 0],
                          "q2": [0, 0, 1]})
    items = [Correction("follow", "what is rag? who introduced it?", "bad", "Lewis et al.", at=1.0,
                        turn="who introduced it?"),
             Correction("first", "q2", "bad", "fix", at=1.0)]
    memory = CorrectionMemory.build(items, embedder, threshold=0.9)
    asked_again = _unit([[1, 0.2, 0]])[0]  # "What is RAG?": 0.99 to the follow-up's query
    assert memory.match(asked_again) is None  # its own words are not the follow-up's
    found = memory.match(asked_again, _unit([[0.1, 1, 0]])[0])  # the same follow-up after the same question
    assert found.correction.answer_id == "follow" and found.similarity > 0.9
    assert memory.match(_unit([[0, 0.1, 1]])[0]).correction.answer_id == "first"  # a first question as before


def test_a_first_question_is_compared_with_the_corrected_turns_own_words():
    """A turn searched joined with an unrelated question before it (a new subject the data dir
    could not yet tell from a follow-up) was corrected for what its words ask: the same words
    asked first in a conversation get the correction, though the joined query is far from them."""
    embedder = _Embedder({"when was the transformer introduced? which company made stylegan?": [1, 0.6, 0],
                          "which company made stylegan?": [0, 1, 0], "q2": [0, 0, 1]})
    items = [Correction("joined", "when was the transformer introduced? which company made stylegan?", "bad",
                        "NVIDIA", at=1.0, turn="which company made stylegan?"),
             Correction("first", "q2", "bad", "fix", at=1.0)]
    memory = CorrectionMemory.build(items, embedder, threshold=0.9)
    alone = _unit([[0, 1, 0.05]])[0]  # the turn's words asked first: 0.51 to the joined query
    found = memory.match(alone)
    assert found.correction.answer_id == "joined" and found.similarity > 0.9
    # Asked after a question again, both the query and the words count, as for a follow-up.
    assert memory.match(alone, alone) is None
    assert memory.match(_unit([[1, 0.6, 0.05]])[0], alone).correction.answer_id == "joined"
    assert memory.match(_unit([[0.05, 0, 1]])[0]).correction.answer_id == "first"


def test_the_same_words_corrected_twice_give_the_newest_correction():
    """The same follow-up corrected after two different questions: asked on its own, the words
    tie, and the newest correction answers (the first of a tie used to be the oldest)."""
    embedder = _Embedder({"what is rag? who introduced it?": [1, 0, 0], "what is a gan? who introduced it?": [0, 0, 1],
                          "who introduced it?": [0, 1, 0]})
    items = [Correction("rag", "what is rag? who introduced it?", "bad", "Lewis et al.", at=1.0,
                        turn="who introduced it?"),
             Correction("gan", "what is a gan? who introduced it?", "bad", "Goodfellow et al.", at=2.0,
                        turn="who introduced it?")]
    for order in (items, items[::-1]):
        memory = CorrectionMemory.build(order, embedder, threshold=0.9)
        assert memory.match(_unit([[0, 1, 0]])[0]).correction.answer_id == "gan"


def test_feedback_on_a_served_correction_takes_it_back_only_on_its_own_question():
    embedder = _Embedder({"what is rag?": [1, 0, 0], "what is rag exactly?": [1, 0.3, 0], "What is  RAG?": [1, 0, 0]})
    saved = Correction("fix", "what is rag?", "bad", "RAG retrieves passages.", at=1.0)
    # served to other words and judged wrong there: that question's own entry, the closer to it
    other_words = Correction("down", "what is rag exactly?", "RAG retrieves passages.", None, at=2.0)
    memory = CorrectionMemory.build([saved, other_words], embedder, threshold=0.9)
    assert memory.match(_unit([[1, 0, 0]])[0]).correction.answer_id == "fix"  # its own question keeps it
    assert memory.match(_unit([[1, 0.3, 0]])[0]).correction.answer_id == "down"  # the other words: a thumbs-down
    # served to its own question (its words but for case and spacing, searched alone) and judged wrong: taken back
    own = Correction("again", "What is  RAG?", "RAG retrieves passages.", None, at=3.0)
    memory = CorrectionMemory.build([saved, other_words, own], embedder, threshold=0.9)
    assert [c.answer_id for c in memory.corrections] == ["again", "down"]


def test_feedback_on_a_follow_ups_correction_after_another_question_keeps_it_after_its_own():
    """The same follow-up words after another question are another question (helper-88's review):
    feedback there does not take back the correction given after the first."""
    embedder = _Embedder({"what is rag? who introduced it?": [1, 0, 0], "what is a gan? who introduced it?": [0, 0, 1],
                          "who introduced it?": [0, 1, 0]})
    saved = Correction("rag", "what is rag? who introduced it?", "bad", "Lewis et al.", at=1.0,
                       turn="who introduced it?")
    elsewhere = Correction("gan", "what is a gan? who introduced it?", "Lewis et al.", None, at=2.0,
                           turn="who introduced it?")
    memory = CorrectionMemory.build([saved, elsewhere], embedder, threshold=0.9)
    turn = _unit([[0, 1, 0]])[0]
    assert memory.match(_unit([[1, 0, 0]])[0], turn).correction.answer_id == "rag"  # after RAG: the correction
    assert memory.match(_unit([[0, 0, 1]])[0], turn).correction.answer_id == "gan"  # after a GAN: the thumbs-down


def test_a_correction_on_a_joined_new_subject_answers_it_asked_first(corpus_bot):
    """helper-81's drive: "Which company made StyleGAN?", searched joined with the question on the
    transformer before it and corrected there, was answered wrongly again when asked first."""
    previous, turn = "When was the transformer architecture introduced?", "Which company made StyleGAN?"
    answer = corpus_bot.ask(turn, retrieval_query=f"{previous} {turn}", conversation_id="c1", turn=1)
    fix = "NVIDIA's researchers made StyleGAN."
    corpus_bot.feedback.set_feedback(answer.id, -1, correction=fix)
    try:
        again = corpus_bot.ask(turn, record=False)
        assert again.answer == fix and again.correction_of == answer.id and again.corrected_question == turn
        assert corpus_bot.ask(previous, record=False).correction_of is None
    finally:
        corpus_bot.feedback.set_feedback(answer.id, None)


def test_a_correction_on_a_follow_up_answers_that_follow_up_only(corpus_bot):
    """The chat page's path: the follow-up "Who introduced it?" is searched with the question
    before it; corrected, it answers the same follow-up in another conversation, not the first
    question asked again."""
    first_question = "What is retrieval-augmented generation?"
    follow_up = "Who introduced it?"
    before = corpus_bot.ask(first_question, record=False)
    query = corpus_bot.standalone_query([first_question], follow_up)
    assert query != follow_up  # searched together with the question before it
    answer = corpus_bot.ask(follow_up, retrieval_query=query, conversation_id="c1", turn=1)
    fix = "Lewis and colleagues at Facebook AI Research introduced it in 2020."
    corpus_bot.feedback.set_feedback(answer.id, -1, correction=fix)
    try:
        again = corpus_bot.ask(first_question, record=False)
        assert again.correction_of is None and again.answer == before.answer
        elsewhere = corpus_bot.ask(follow_up, record=False, retrieval_query=query, conversation_id="c2", turn=1)
        assert elsewhere.answer == fix and elsewhere.correction_of == answer.id
        # The sources panel names the question as the user typed it, not the joined query.
        assert elsewhere.corrected_question == follow_up
    finally:
        corpus_bot.feedback.set_feedback(answer.id, None)
    # The price, as the README says: a correction of the question asked whole does not answer it
    # asked as a follow-up, whose own words ("Who introduced it?") name no subject.
    whole = corpus_bot.ask("Who introduced retrieval-augmented generation?")
    corpus_bot.feedback.set_feedback(whole.id, -1, correction=fix)
    try:
        assert corpus_bot.ask("Who introduced retrieval-augmented generation?", record=False).answer == fix
        asked_after = corpus_bot.ask(follow_up, record=False, retrieval_query=query, conversation_id="c3", turn=1)
        assert asked_after.correction_of is None
    finally:
        corpus_bot.feedback.set_feedback(whole.id, None)


def test_a_correction_answers_the_question_again_and_its_paraphrase(corpus_bot):
    bot = corpus_bot  # with the default match threshold (fit on the shipped corpus's own questions)
    question = "Who described retrieval-augmented generation and when?"
    first = bot.ask(question)
    assert "Lewis" not in first.answer  # the quoted sentence misses it, which is why the user corrects
    fix = "Lewis and colleagues at Facebook AI Research described it in 2020."
    bot.feedback.set_feedback(first.id, -1, correction=fix)
    try:
        again = bot.ask(question)
        assert again.answer == fix and not again.refused
        assert again.correction_of == first.id and again.corrected_question == question
        assert bot.feedback.answer_trace(again.id)["params"]["correction_of"] == first.id
        shown = render_sources(again, show_all=False)
        assert "A saved correction, not a quote from the documents" in shown and "Who described retrieval" in shown
        reworded = bot.ask("Who first described retrieval-augmented generation, and in which year?")
        assert reworded.answer == fix
        unrelated = bot.ask("What is mode collapse in a GAN?")
        assert unrelated.correction_of is None and "mode collapse" in unrelated.answer
        # Off: the documents answer as before.
        plain = bot.with_settings(use_corrections=False)
        plain._embedder = corpus_bot.embedder
        assert plain.ask(question, record=False).answer == first.answer
    finally:
        bot.feedback.set_feedback(first.id, None)
    assert bot.ask(question, record=False).answer == first.answer  # feedback removed: as before


def test_a_correction_to_the_refusal_makes_ragbot_refuse(corpus_bot):
    question = "What is latent diffusion?"
    first = corpus_bot.ask(question)
    assert not first.refused
    corpus_bot.feedback.set_feedback(first.id, -1, correction=REFUSAL)
    try:
        again = corpus_bot.ask(question, record=False)
        assert again.refused and again.refusal_reason == "corrected" and again.answer == REFUSAL
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)


def test_a_thumbs_down_stops_the_rejected_sentence_being_quoted_again(corpus_bot):
    question = "What is mode collapse in a GAN?"
    first = corpus_bot.ask(question)
    corpus_bot.feedback.set_feedback(first.id, -1)
    try:
        again = corpus_bot.ask(question, record=False)
        assert again.answer != first.answer and again.correction_of is None
        rejected = first.answer.split(" [")[0]
        assert rejected not in again.answer
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)


def test_corrections_are_each_users_own_and_stay_out_of_evaluations_on_given_passages(corpus_bot):
    question = "What is mode collapse in a GAN?"
    first = corpus_bot.ask(question, user="ann")
    fix = "Mode collapse is when a GAN's generator makes only a few kinds of output."
    corpus_bot.feedback.set_feedback(first.id, -1, correction=fix, user="ann")
    try:
        assert corpus_bot.ask(question, record=False, user="ann").answer == fix
        assert corpus_bot.ask(question, record=False, user="bob").answer != fix  # another user's answer stands
        assert corpus_bot.ask(question, record=False).answer != fix
        given = corpus_bot.ask(question, record=False, user="ann",
                               passages=["Mode collapse means the generator covers few modes of the data."])
        assert given.correction_of is None  # an evaluation on given passages measures the model
    finally:
        corpus_bot.feedback.set_feedback(first.id, None, user="ann")


def test_a_thumbs_down_on_a_corrected_answer_takes_the_correction_back(corpus_bot):
    question = "What is latent diffusion?"
    first = corpus_bot.ask(question)
    corpus_bot.feedback.set_feedback(first.id, -1, correction=REFUSAL)
    corrected = corpus_bot.ask(" what is latent  diffusion?")  # its words again: the correction answers
    try:
        assert corrected.refused and corrected.correction_of == first.id
        corpus_bot.feedback.set_feedback(corrected.id, -1)  # "no, that was wrong too"
        again = corpus_bot.ask(question, record=False)
        assert not again.refused and again.correction_of is None  # the documents answer again
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)
        corpus_bot.feedback.set_feedback(corrected.id, None)


def test_a_thumbs_down_on_a_correction_given_to_other_words_keeps_it_for_its_own(corpus_bot):
    """A correction close enough to another question answers it too; a thumbs-down there used to
    delete the correction, so the question it was saved for lost it (helper-84's review). Now that
    question keeps it, and the other words are answered from the documents."""
    question = "What is latent diffusion?"
    first = corpus_bot.ask(question)
    corpus_bot.feedback.set_feedback(first.id, -1, correction=REFUSAL)
    reworded = "What is latent diffusion exactly?"
    handlers = ChatHandlers(corpus_bot)
    *_, (history, panel, _) = handlers.respond(reworded, [], "c", 5, 0.0, False, session="s")
    served = corpus_bot.feedback.answer_trace(history[-1]["metadata"]["id"])
    try:
        assert served["refused"] and served["params"]["correction_of"] == first.id
        # What a thumbs-down does here, said in the panel as on the page read again (helper-87)
        stop = ("To stop it answering this question, give this answer a thumbs-down: with a new correction, that one "
                "answers it; without one, the documents do, and the saved correction still answers the question it "
                "was given for.")
        assert stop in panel and "To replace it" not in panel
        assert stop in handlers.sources_of(history, len(history) - 1, "s", False)
        said = handlers.on_like(history, len(history) - 1, False, session="s")
        assert said == ("Thanks: marked unhelpful. The saved correction it showed no longer answers this question: "
                        f"asked again, the documents answer. It still answers “{literal(question)}”; a thumbs-down "
                        "on its answer to that question withdraws it.")
        again = corpus_bot.ask(reworded, record=False)
        assert not again.refused and again.correction_of is None  # the documents answer the other words
        kept = corpus_bot.ask(question, record=False)
        assert kept.refused and kept.correction_of == first.id  # the correction still answers its own
        assert handlers.on_like(history, len(history) - 1, None, session="s") == (
            "Vote removed. The saved correction it showed answers again.")
        assert corpus_bot.ask(reworded, record=False).correction_of == first.id
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)
        corpus_bot.feedback.set_feedback(served["id"], None)


def test_the_chat_says_when_a_vote_withdraws_a_served_correction_and_shows_what_is_saved(corpus_bot):
    """A thumbs-down on a served correction withdraws it (the test above), and the page said only
    "Thanks: marked unhelpful."; choosing an answer to correct showed nothing of what was saved
    with it, since the boxes are emptied once saved (helper-57's drive)."""
    question = "What is latent diffusion?"
    first = corpus_bot.ask(question)
    fix = "Latent diffusion runs the diffusion process in a compressed latent space [1]."
    corpus_bot.feedback.set_feedback(first.id, -1, correction=fix)
    handlers = ChatHandlers(corpus_bot)
    try:
        *_, (history, _, _) = handlers.respond(question, [], "c", 5, 0.0, False, session="s")
        served = history[-1]["metadata"]["id"]
        assert corpus_bot.feedback.answer_trace(served)["params"]["correction_of"] == first.id
        withdrawn = handlers.on_like(history, len(history) - 1, False, session="s")
        assert withdrawn.startswith("Thanks: marked unhelpful. The saved correction it showed is withdrawn")
        assert handlers.on_like(history, len(history) - 1, None, session="s") == (
            "Vote removed. The saved correction it showed answers again.")
        assert handlers.on_like(history, len(history) - 1, True, session="s") == "Thanks: marked helpful."
        # What is saved with the chosen answer is said under the choice, as text; only to the
        # session that was given the answer.
        assert handlers.saved_feedback(history, served, session="s") == ""
        handlers.on_comment(history, "too <b>short</b>", "", session="s", answer_id=served)
        said = handlers.saved_feedback(history, served, session="s")
        assert said == (f"Saved with this answer: comment “{literal('too <b>short</b>')}”. To change it, write the new "
                        "text above and save again.") and "<b>" not in said
        assert handlers.saved_feedback(history, served, session="other") == ""
        assert handlers.saved_feedback(history, first.id, session="s") == ""  # not an answer of this chat
        # An answer that is no correction: a thumbs-down is only a vote.
        *_, (history, _, _) = handlers.respond("What is mode collapse in a GAN?", history, "c", 5, 0.0, False,
                                               session="s")
        assert handlers.on_like(history, len(history) - 1, False, session="s") == "Thanks: marked unhelpful."
        corpus_bot.feedback.set_feedback(history[-1]["metadata"]["id"], None)
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)
        corpus_bot.feedback.set_feedback(served, None)


def test_a_row_rejected_in_its_old_form_is_not_quoted_again():
    """Answers quoted a table row with its bars ("Engine Manufacturer: | Lycoming [2]") before
    rows were read as "Engine Manufacturer: Lycoming"; a thumbs-down given then still counts."""
    from ragbot.answer.evidence import Evidence
    from ragbot.bot import _without

    ranked = [Evidence(n=2, text="Engine Manufacturer: Lycoming; Engine Model/Series: O-320", score=0.9),
              Evidence(n=1, text="The engine lost power on final approach.", score=0.5)]
    for rejected in ("Engine Manufacturer: | Lycoming | Engine Model/Series: | O-320 [2]",
                     "Engine Manufacturer: Lycoming; Engine Model/Series: O-320 [2]."):
        assert [e.text for e in _without(ranked, rejected)] == ["The engine lost power on final approach."]
    assert len(_without(ranked, "Something else entirely [1].")) == 2


def test_a_correction_served_in_the_chat_says_so_in_the_message_its_sources_and_the_export(corpus_bot):
    """A served correction read as a quote from the documents, and its sources panel called it
    "your correction" in every browser, though without a login all of them share it (helper-49)."""
    question = "Who described retrieval-augmented generation and when?"
    first = corpus_bot.ask(question)
    fix = "Lewis and colleagues at Facebook AI Research described it in 2020."
    corpus_bot.feedback.set_feedback(first.id, -1, correction=fix)
    handlers, conversation = ChatHandlers(corpus_bot), "c0ffee" * 5 + "00"
    try:
        handlers.start_turn(conversation, "browser:ann", question)
        *_, (history, panel, _) = handlers.respond(question, [], conversation, 5, 0.0, False, session="s")
        assert message_text(history[-1]) == f"{CORRECTION_MARK} {fix}"
        assert "A saved correction, not a quote from the documents" in panel and "Your correction" not in panel
        # How to replace it, said as the feedback log does it (test_a_thumbs_down_on_a_corrected_…);
        # "Vote on this answer to change it again" did not say how (helper-54).
        assert "To replace it, give this answer a thumbs-down" in panel
        # Whom it answers, said plainly ("with a login, only its author's; without one, every
        # browser's here" was hard to parse: helper-63).
        assert "without a login, for everyone who uses this ragbot; with one, for the person who gave it" in panel
        reopened = handlers.reopen(conversation, "browser:ann", session="t")
        assert message_text(reopened[-1]) == f"{CORRECTION_MARK} {fix}"
        exported = handlers.conversations.export(conversation, "browser:ann")
        assert f"**Answer (a saved correction, not a quote from the documents):** {fix}" in exported
        # An answer quoted from the documents is not marked.
        other = "What is mode collapse in a GAN?"
        handlers.start_turn(conversation, "browser:ann", other)
        *_, (history, _, _) = handlers.respond(other, history, conversation, 5, 0.0, False, session="s")
        assert "mode collapse" in message_text(history[-1]) and CORRECTION_MARK not in message_text(history[-1])
        assert "**Answer:** " in handlers.conversations.export(conversation, "browser:ann")
    finally:
        corpus_bot.feedback.set_feedback(first.id, None)
        handlers.delete_conversation(conversation, "browser:ann")


def test_a_correction_cites_the_passages_it_names_where_they_stand_now(corpus_bot):
    """A correction's [n] names the n-th passage of the answer it corrects. Served again, the mark
    names that passage among this answer's passages (numbered first, as any answer's cited
    passages are), which holds it even when this search did not find it; a mark that names none
    is dropped."""
    bot = corpus_bot
    question = "Who described retrieval-augmented generation and when?"
    first = bot.ask(question)
    n = next(p.rank for p in first.passages if "Lewis" in p.text)
    lewis = first.passages[n - 1].chunk_id
    bot.feedback.set_feedback(first.id, -1, correction=f"Lewis and colleagues described it in 2020 [{n}]. See [9].")
    try:
        again = bot.ask(question)
        assert again.passages[0].chunk_id == lewis and len(again.passages) == len(first.passages)
        assert again.answer == "Lewis and colleagues described it in 2020 [1]. See."
        assert [(c.n, c.chunk_id) for c in again.citations] == [(1, lewis)]
        shown = render_sources(again, show_all=False)
        assert "A saved correction, not a quote from the documents" in shown and "Lewis" in shown and "id='source-1'" in shown
        # Searching only another document finds no such passage: it is added to the ones found.
        only_gans = bot.search(question, sources=[str(CORPUS / "gans.md")])
        assert lewis not in {p.chunk_id for p in only_gans}
        elsewhere = bot.ask(question, record=False, sources=[str(CORPUS / "gans.md")])
        assert elsewhere.correction_of == first.id
        assert [p.chunk_id for p in elsewhere.passages] == [lewis] + [p.chunk_id for p in only_gans]
        assert elsewhere.answer.endswith("in 2020 [1]. See.") and [c.n for c in elsewhere.citations] == [1]
        # The answer log keeps what was shown and cited, as for any answer.
        trace = bot.feedback.answer_trace(again.id)
        assert [r["chunk_id"] for r in trace["passages"] if r["cited"]] == [lewis]
    finally:
        bot.feedback.set_feedback(first.id, None)


def test_a_correction_cites_its_passage_after_the_document_is_edited_elsewhere_or_read_again(make_bot, tmp_path,
                                                                                             monkeypatch):
    """An edit anywhere in a document, or a new pipeline, stored every chunk of it under a new
    id, so a correction's [n] named a chunk removed since: served again, it cited nothing, and
    `tune --retriever` lost the passage it named. A chunk the edit leaves unchanged keeps its id."""
    from ragbot.ingest import ingester

    notes = tmp_path / "notes"
    notes.mkdir()
    sections = {"Roof": "The board chose Northgate Builders to repair the roof, by a vote of 6 to 3.",
                "Staff": "The board appointed Lucia Montenegro as assistant director in June.",
                "Budget": "The library budget for 2026 is 1.2 million dollars, up four percent."}

    def write(budget: str) -> None:
        (notes / "minutes.md").write_text("# Board minutes\n\n" + "\n\n".join(
            f"## {name}\n\n{budget if name == 'Budget' else text}" for name, text in sections.items()) + "\n")

    write(sections["Budget"])
    bot = make_bot()
    bot.ingest([notes])
    question = "Which company will repair the roof?"
    first = bot.ask(question)
    n = next(p.rank for p in first.passages if "Northgate" in p.text)
    roof = first.passages[n - 1].chunk_id
    bot.feedback.set_feedback(first.id, -1, correction=f"Northgate Builders, chosen by 6 votes to 3 [{n}].")
    write("The library budget for 2026 is 1.3 million dollars, up six percent.")  # another section edited
    report = bot.ingest([notes])
    assert report.updated and report.chunks_kept == report.chunks_added - 1
    monkeypatch.setattr(ingester, "PIPELINE_VERSION", ingester.PIPELINE_VERSION + 1)
    assert make_bot(data_dir=bot.settings.data_dir).ingest([notes]).updated  # read again whole
    assert bot.store.chunks([roof])[roof].text.endswith(sections["Roof"])  # the same passage, the same id
    again = bot.ask(question)
    assert again.correction_of == first.id and again.answer == "Northgate Builders, chosen by 6 votes to 3 [1]."
    assert [(c.n, c.chunk_id) for c in again.citations] == [(1, roof)]
    assert bot.feedback.corrected_passages() == [{"answer_id": first.id, "question": question, "chunk_ids": [roof]}]
