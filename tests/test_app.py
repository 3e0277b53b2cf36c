"""Chat UI handlers as plain functions (the browser test drives the page itself)."""

import copy
import html
import re
import shutil
from pathlib import Path

from ragbot.answer.generation import REFUSAL
from ragbot.interfaces.handlers import ChatHandlers, safe_upload_name
from ragbot.interfaces.rendering import answer_id_of, literal, message_text, render_sources, snippet_html, STOPPED_MARK
from ragbot.types import Answer, Citation, Passage

from conftest import CORPUS, copies_in_folders


def test_a_follow_up_is_searched_with_the_previous_question_when_that_finds_more(corpus_bot):
    """No word list decides: the joined query is used when its best passage scores higher."""
    earlier = ["What is a variational autoencoder?"]
    assert corpus_bot.standalone_query(earlier, "Who introduced it?") == "What is a variational autoencoder? Who introduced it?"
    assert corpus_bot.standalone_query(earlier, "How do diffusion models generate images?") == \
        "How do diffusion models generate images?"
    assert corpus_bot.standalone_query([], "Who introduced it?") == "Who introduced it?"


def test_a_new_subject_is_searched_alone_though_joining_finds_more(corpus_bot):
    """Joined with a question it does not follow, a new subject still found a closer passage (the
    question before's), and was answered from it: "What is RLHF?" after a healthcare question got
    the healthcare answer again (helper-47's drive). It is searched alone when joining dilutes
    what the question before found alone and the answer check accepts it alone; follow-ups that
    sharpen the question before, or that find nothing alone, are still joined."""
    for before, turn, source in [("How is generative AI used in healthcare?", "What is RLHF?", "fine-tuning-and-rlhf.md"),
                                 ("How is generative AI used in banking?", "What are the risks of deepfakes?",
                                  "risk-deepfakes.md")]:
        query = corpus_bot.standalone_query([before], turn)
        assert query == turn
        answer = corpus_bot.ask(turn, retrieval_query=query, record=False)
        assert [c.source.rsplit("/", 1)[-1] for c in answer.citations] == [source], answer.answer
    for before, turn in [("What is a GAN?", "Who proposed it?"), ("What is RLHF?", "And how is it trained?"),
                         ("What is mode collapse in GANs?", "How is it fixed?")]:
        assert corpus_bot.standalone_query([before], turn) == f"{before} {turn}"


def test_a_new_subject_asked_within_chosen_documents_is_not_answered_from_the_subject_before(make_bot, tmp_path):
    """helper-89's drive: with a warranty chosen, "Which roofing company did the board choose?"
    after a warranty question found nothing alone in the warranty, was searched joined with the
    question before, and quoted the warranty's frame sentence (0.64). Whether a turn follows the
    one before is told from the whole library; the chosen documents then refuse it. A follow-up
    within them is still joined, and a new question they answer is answered."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "warranty.md").write_text(
        "# Vantor Bikes warranty\n\nVantor Bikes covers every aluminium frame against manufacturing defects for 7 "
        "years from the date of purchase. A carbon frame is covered for 5 years. Paint and decals are covered for "
        "one year.\n\n## Claims\n\nTo make a claim, bring the bike and the receipt to any Vantor dealer.\n")
    (tmp_path / "docs" / "minutes.md").write_text(
        "# Library board minutes\n\n## March meeting\n\nThe board chose Northgate Builders to repair the roof, by a "
        "vote of 6 to 3. The repair will cost 48,000 dollars and starts in May.\n")
    bot = make_bot()
    assert bot.ingest([tmp_path / "docs"]).ok
    chosen = [str(tmp_path / "docs" / "warranty.md")]
    before = "How long is the warranty on a carbon frame?"
    assert "5 years [1]" in bot.ask(before, sources=chosen, record=False).answer
    turn = "Which roofing company did the board choose?"
    assert bot.standalone_query([before], turn) == turn
    assert bot.ask(turn, retrieval_query=turn, sources=chosen, record=False).refused
    # As the page asks them, the warranty chosen under "Your documents".
    handlers, history = ChatHandlers(bot), []
    for question in (before, turn):
        *_, (history, _, _) = handlers.respond(question, history, "c", 5, 0.0, False, session="s", sources=chosen)
    assert "5 years" in message_text(history[1])
    assert message_text(history[3]) == "I don't know: the chosen document does not contain the answer."
    assert "Northgate" in bot.ask(turn, retrieval_query=turn, record=False).answer  # the library answers it
    follow = "And an aluminium one?"
    query = bot.standalone_query([before], follow)
    assert query == f"{before} {follow}"
    assert "7 years" in bot.ask(follow, retrieval_query=query, sources=chosen, record=False).answer
    claim = "How do I make a claim?"
    assert bot.ask(claim, retrieval_query=bot.standalone_query([before], claim), sources=chosen,
                   record=False).answer.startswith("To make a claim")


def test_a_question_answered_alone_is_not_joined_to_be_refused(make_bot, tmp_path):
    """"What is mode collapse?" after "Where did the airplane depart from?" found a closer passage
    joined to it (the accident report's analysis) than either question alone, so it was searched
    joined, and refused (helper-60's drive), though the answer check answers it alone: it is
    searched alone. A follow-up that finds nothing alone stays joined."""
    (tmp_path / "docs").mkdir()
    shutil.copy(CORPUS / "gans.md", tmp_path / "docs" / "gans.md")
    (tmp_path / "docs" / "accident.md").write_text(  # the NTSB report of that drive, its analysis
        "## Analysis\n\nThe pilot, age 85, was attempting to land a Piper PA-22-150 at his private airstrip. "
        "While on\nfinal approach for the 1,500-foot-long turf strip, the airplane contacted trees, then utility "
        "wires,\nand came to rest upright. The reported weather about the time of the accident included calm\n"
        "winds, a broken ceiling at 9,000 feet, and visibility 10 miles. The pilot reported a total flight\n"
        "experience of 2,319 hours; of which, most was in the same make and model as the accident\nairplane. "
        "In addition, the pilot flew the accident airplane about 17 hours during the 90-day\nperiod preceding "
        "the accident. Examination of the wreckage did not reveal any preimpact\nmechanical malfunctions, nor "
        "did the pilot report any.\n")
    bot = make_bot()
    assert bot.ingest([tmp_path / "docs"]).ok
    before, turn = "Where did the airplane depart from?", "What is mode collapse?"
    joined = f"{before} {turn}"
    alone, together, first = bot.batch_search([turn, joined, before])
    assert together[0].score > max(alone[0].score, first[0].score)  # joining finds more: the case above
    assert bot.ask(turn, retrieval_query=joined, record=False).refused
    assert bot.standalone_query([before], turn) == turn
    answer = bot.ask(turn, retrieval_query=turn, record=False)
    assert not answer.refused and answer.answer.startswith("In mode collapse"), answer.answer
    assert bot.standalone_query(["What is mode collapse?"], "Who proposed it?") == "What is mode collapse? Who proposed it?"


def _asked(handlers: ChatHandlers, questions: list[str], session: str, history: list | None = None) -> list[dict]:
    """The chat history after `questions` are asked in turn on the page, in one conversation."""
    history = list(history or [])
    for question in questions:
        *_, (history, _, _) = handlers.respond(question, history, f"conv-{session}", 5, 0.0, False, session=session)
    return history


def test_a_third_turn_keeps_the_subject_the_second_was_joined_with(corpus_bot):
    """helper-68's drive: a third turn was joined with the second turn's question alone, which
    names no subject ("Why are they slow?" after "What is a diffusion model?" and "Which paper
    described the method?" was refused). It is joined with what the second turn searched, the two
    questions together (searched_before, docs/benchmarks.md §36)."""
    handlers = ChatHandlers(corpus_bot)
    history = _asked(handlers, ["What is the transformer architecture?", "Who introduced it?", "What did it replace?"],
                     "third-turn")
    searched = [corpus_bot.feedback.answer_trace(m["metadata"]["id"])["retrieval_query"] for m in history[1::2]]
    assert searched[1] == "What is the transformer architecture? Who introduced it?"
    assert searched[2] == f"{searched[1]} What did it replace?"
    assert message_text(history[-1]).startswith("It replaced recurrent networks for language tasks"), history[-1]


def test_a_third_turn_quotes_what_it_asks_not_what_the_subjects_first_question_asked(corpus_bot):
    """The third turn's query holds the subject's whole chain, which leans on its first question:
    "How is it trained?" after "What is a variational autoencoder?" and "Who introduced it?" quoted
    the VAE's definition. Its sentences are ordered by the last question and the turn, as the
    page's history holds them (bot.ordering_query, docs/benchmarks.md §37)."""
    handlers = ChatHandlers(corpus_bot)
    history = _asked(handlers, ["What is a variational autoencoder?", "Who introduced it?", "How is it trained?"],
                     "ordered-third-turn")
    searched = corpus_bot.feedback.answer_trace(history[-1]["metadata"]["id"])["retrieval_query"]
    assert searched == "What is a variational autoencoder? Who introduced it? How is it trained?"
    assert message_text(history[-1]).startswith("A VAE is trained to maximise the evidence lower bound"), history[-1]


def test_a_turn_after_a_refused_one_is_joined_with_the_subject_before_it(corpus_bot):
    """helper-68's drive: a follow-up asked after an off-topic question the page refused was joined
    with that question, and refused too. A refused turn is left out: the follow-up is joined with
    the last answered one."""
    handlers = ChatHandlers(corpus_bot)
    history = _asked(handlers, ["What is a GAN?", "What is the capital of Australia?", "Who introduced them?"],
                     "after-refusal")
    traces = [corpus_bot.feedback.answer_trace(m["metadata"]["id"]) for m in history[1::2]]
    assert [t["refused"] for t in traces] == [False, True, False]
    assert traces[2]["retrieval_query"] == "What is a GAN? Who introduced them?"
    assert message_text(history[-1]).startswith("Ian Goodfellow and colleagues introduced GANs in 2014"), history[-1]


def test_a_stopped_turn_or_an_empty_question_is_no_turn_to_join_with(corpus_bot):
    """A stopped answer is not stored (no id): its turn is skipped, as a refused one is, and the
    next is joined with what the turn before it searched (helper-70's review). A turn whose
    answer was another session's is read as the page shows it: its question, refused if the
    answer says so."""
    handlers = ChatHandlers(corpus_bot)
    history = _asked(handlers, ["What is the transformer architecture?", "Who introduced it?"], "stopped")
    joined = "What is the transformer architecture? Who introduced it?"
    stopped = [{"role": "user", "content": "What did it replace?"}, {"role": "assistant", "content": "It rep …"}]
    empty = [{"role": "user", "content": "  "}, history[-1]]
    assert handlers._earlier_queries(history + stopped, "stopped") == [joined]
    assert handlers._earlier_queries(history + empty, "stopped") == [joined]
    foreign_refusal = [{"role": "user", "content": "Where is Canberra?"},
                       {"role": "assistant", "content": REFUSAL, "metadata": {"id": "not-given-here"}}]
    assert handlers._earlier_queries(history + foreign_refusal, "stopped") == [joined]
    foreign_answer = [foreign_refusal[0], {**foreign_refusal[1], "content": "In Australia [1]."}]
    assert handlers._earlier_queries(history + foreign_answer, "stopped") == ["Where is Canberra?"]
    assert handlers._earlier_queries(foreign_refusal, "stopped") == ["Where is Canberra?"]  # nothing answered


def test_a_long_conversation_is_cut_from_its_start_so_the_new_turn_is_still_read(corpus_bot):
    """The query joins every turn of a subject; the embedder reads a bounded input and would drop
    its end, the new turn, first. What the conversation searched is cut from its start instead."""
    previous = " ".join(["What is a generative adversarial network and who introduced it?"] * 40)
    question = "Where did they work?"
    kept = corpus_bot._fitting_before(previous, question)
    assert previous.endswith(kept) and 0 < len(kept) < len(previous)
    embedder = corpus_bot.embedder
    assert embedder.count_tokens([f"{kept} {question}"])[0] <= embedder.max_tokens
    assert corpus_bot._fitting_before("What is a GAN?", question) == "What is a GAN?"
    filling = " ".join(["Who introduced the generative adversarial network and in which year?"] * 25)
    assert embedder.count_tokens([filling])[0] > embedder.max_tokens
    assert corpus_bot.standalone_query(["What is a GAN?"], filling) == filling  # nothing left to join


def test_what_an_earlier_turn_searched_is_read_only_for_this_sessions_answers(corpus_bot):
    """The page sends the history back, answer ids included: an id the session was not given
    (another user's answer) is not read from the answer log; its turn counts as the question the
    history shows."""
    handlers = ChatHandlers(corpus_bot)
    theirs = _asked(handlers, ["What is the transformer architecture?", "Who introduced it?"], "owner")
    joined = corpus_bot.feedback.answer_trace(theirs[-1]["metadata"]["id"])["retrieval_query"]
    assert joined == "What is the transformer architecture? Who introduced it?"
    copied = [{"role": "user", "content": "Who introduced it?"}, theirs[-1]]
    history = _asked(handlers, ["What did it replace?"], "stranger", copied)
    query = corpus_bot.feedback.answer_trace(history[-1]["metadata"]["id"])["retrieval_query"]
    assert "transformer" not in query
    assert handlers._earlier_queries(theirs, "owner") == [joined]
    assert handlers._earlier_queries(theirs, "stranger") == ["Who introduced it?"]


def test_upload_names_cannot_leave_the_uploads_folder():
    assert safe_upload_name("../../etc/passwd") == "passwd"
    assert safe_upload_name("..\\..\\win.md") == "win.md"
    assert safe_upload_name(".bashrc") == "bashrc"
    assert safe_upload_name("a<b>|c.md") == "a_b__c.md"
    assert safe_upload_name("..") == "upload"


def test_sources_show_hostile_text_as_text():
    hostile = Passage(chunk_id=1, source="/d/<img src=x onerror=alert(1)>.md", title="<b>T</b>", section="",
                      page=2, text="<script>alert('x')</script> & more", score=0.5, rank=1)
    answer = Answer(question="q", answer="a [1]", refused=False, citations=[], passages=[hostile], prompt="p",
                    raw_reply="a", model="m", adapter=None, timings_ms={}, tokens={})
    rendered = render_sources(answer, show_all=True)
    assert "<script>" not in rendered and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in rendered
    assert "<img" not in rendered and "&lt;b&gt;T&lt;/b&gt;" in rendered
    assert ", page 2" in rendered
    # The number shown is named for what it is, and its explanation cannot end the attribute early.
    from ragbot.interfaces.rendering import SIMILARITY_NOTE
    assert f"<span title='{html.escape(SIMILARITY_NOTE)}'>similarity 0.50</span>" in rendered
    assert "'" in SIMILARITY_NOTE and SIMILARITY_NOTE not in rendered
    assert rendered.count("page 2") == 1  # it was said after the name and again in the brackets


def test_sources_name_a_title_and_section_only_where_they_say_more_than_the_file_name():
    # "glimmerwood.txt (glimmerwood; similarity …)" repeated the name (helper-54).
    def shown(source, title, section):
        passage = Passage(chunk_id=1, source=source, title=title, section=section, page=None, text="t", score=0.5,
                          rank=1)
        answer = Answer(question="q", answer="a [1]", refused=False, citations=[], passages=[passage], prompt="p",
                        raw_reply="a", model="m", adapter=None, timings_ms={}, tokens={})
        return render_sources(answer, show_all=True)

    assert "(<span title=" in shown("/d/glimmer_wood-notes.txt", "glimmer wood notes", "")
    assert "(GANs &gt; History; <span" in shown("/d/gans.md", "GANs", "GANs > History")
    assert "(notes &gt; Setup; <span" in shown("/d/notes.txt", "notes", "Setup")


def test_a_long_passage_opens_to_its_whole_text():
    """The panel shows a passage's first SNIPPET_CHARS; the rest (where the answer may be) is one
    click away, escaped like the rest."""
    from ragbot.interfaces.rendering import SNIPPET_CHARS

    text = "x" * SNIPPET_CHARS + " described by Lewis & colleagues <b>in 2020</b>."
    long = Passage(chunk_id=1, source="/d/rag.md", title="RAG", section="", page=None, text=text, score=0.5, rank=1)
    answer = Answer(question="q", answer="a [1]", refused=False, citations=[], passages=[long], prompt="p",
                    raw_reply="a", model="m", adapter=None, timings_ms={}, tokens={})
    rendered = render_sources(answer, show_all=True)
    summary, whole = rendered.split("</summary>")
    assert "Lewis" not in summary and "x …" in summary and summary.endswith("(show all)</span>")
    assert whole.startswith("x" * SNIPPET_CHARS + " described by Lewis &amp; colleagues &lt;b&gt;in 2020&lt;/b&gt;.")
    short = render_sources(Answer(**{**answer.__dict__, "passages": [Passage(**{**long.__dict__, "text": "Short."})]}),
                           show_all=True)
    assert "<details" not in short and "<blockquote class='ragbot-passage'>Short.</blockquote>" in short
    # A cited passage is shown whole: the sentence quoted from it may stand past the cut.
    cited = render_sources(Answer(**{**answer.__dict__, "citations": [Citation(
        n=1, source=long.source, page=None, chunk_id=1, score=0.5, text=long.text)]}), show_all=False)
    assert "<details" not in cited and "described by Lewis &amp; colleagues" in cited


def test_a_passage_heading_is_shown_as_a_title_and_its_text_as_text():
    shown = snippet_html("## Evaluating retrieval\n\nRAG is judged <b>twice</b>,\nonce for search.\n"
                         "- first item\n- second\n# <script>x</script> ##")
    assert shown == ("<b>Evaluating retrieval</b><br>RAG is judged &lt;b&gt;twice&lt;/b&gt;, once for search.<br>"
                     "- first item<br>- second<br><b>&lt;script&gt;x&lt;/script&gt;</b>")
    assert snippet_html("#hashtag is not a heading") == "#hashtag is not a heading"
    # A line a PDF sets apart by its spacing (text.LINE_BREAK) is shown on a line of its own.
    assert snippet_html("Flight Conducted Under: Part 91\n\u2028On December 23, the airplane\ndeparted.") == \
        "Flight Conducted Under: Part 91<br>On December 23, the airplane departed."
    # A PDF's list item, opened by a bullet glyph, is on a line of its own as a Markdown one is.
    assert snippet_html("Strategies:\n• NARA will keep\nrecords.\n• It will open them. • Not a new line") == \
        "Strategies:<br>• NARA will keep records.<br>• It will open them. • Not a new line"
    assert snippet_html("Strategies:\n•\nNARA will keep records.") == "Strategies:<br>• NARA will keep records."
    # A table row reads as an answer quotes it ("Label: value"), so a quote can be found in it;
    # a Markdown table's rule line is not shown, and a cell's markup stays text.
    assert snippet_html("Form:\n| Location: | Quincy, FL |\n| Aircraft: | Piper |\nwrapped | line\nends") == \
        "Form:<br>Location: Quincy, FL<br>Aircraft: Piper<br>wrapped | line ends"
    assert snippet_html("| Name | Note |\n| --- | --- |\n| <b>x</b> | a & b |") == \
        "Name; Note<br>&lt;b&gt;x&lt;/b&gt;; a &amp; b"
    assert snippet_html("x**2 + y**2 and f(**kwargs) or g(**opts), **bold**") == \
        "x**2 + y**2 and f(**kwargs) or g(**opts), <b>bold</b>"
    assert snippet_html("- **StyleGAN** (NVIDIA) and **<i>x</i>**\n\n2 ** 3 ** 4, **a\n\nb**") == \
        "- <b>StyleGAN</b> (NVIDIA) and <b>&lt;i&gt;x&lt;/i&gt;</b><br>2 ** 3 ** 4, **a<br>b**"
    # `code` shows as code, its markup still text, also across a wrapped line (as in Markdown);
    # a lone or spaced backtick, or a pair in two paragraphs, stays as typed.
    assert snippet_html("Run `ragbot ingest` or `<b>x</b>`; a ` tick, ` spaced `, `a\nb`") == \
        "Run <code>ragbot ingest</code> or <code>&lt;b&gt;x&lt;/b&gt;</code>; a ` tick, ` spaced `, <code>a b</code>"
    assert snippet_html("`a\n\nb`") == "`a<br>b`"
    # Code first, as Markdown reads it: no bold inside code, no tags crossing each other.
    assert snippet_html("`**kwargs**` and **b**") == "<code>**kwargs**</code> and <b>b</b>"
    assert snippet_html("**a `b** c`") == "**a <code>b** c</code>"
    assert snippet_html("``code``") == "``code``"


def test_the_sentence_an_answer_quotes_is_marked_where_its_passage_holds_it():
    """An answer quotes one sentence; the panel marks it in its passage, so the sentences around it
    can be read ("It is an example of …" says what "It" is just before). Found as quotes are cut:
    across a wrapped line, without the passage's own **bold**, `code` and [n], in a table row read
    as "Label: value"; a sentence only whole, and nothing marked that is not there."""
    text = ("ragbot answers from your documents, on your own\ncomputer. It is an example of RAG [3].\n\n"
            "- **Ingest**: `ragbot ingest` reads <b>PDF</b>.\n| Seats: | 24 | Engine: | Lycoming |")
    quotes = ["It is an example of RAG.", "Ingest: ragbot ingest reads <b>PDF</b>.", "Seats: 2", "Engine: Lycoming",
              "A sentence the passage does not hold."]
    assert snippet_html(text, quotes) == (
        "ragbot answers from your documents, on your own computer. "
        "<mark class='ragbot-quote'>It is an example of RAG [3].</mark><br>"
        "- <b><mark class='ragbot-quote'>Ingest</mark></b><mark class='ragbot-quote'>: </mark><code><mark "
        "class='ragbot-quote'>ragbot ingest</mark></code><mark class='ragbot-quote'> reads &lt;b&gt;PDF&lt;/b&gt;.</mark><br>"
        "Seats: 24; <mark class='ragbot-quote'>Engine: Lycoming</mark>")
    assert snippet_html(text) == snippet_html(text, ["A sentence the passage does not hold."])
    # The marks' stand-ins in a document's own text are dropped, never read as marks.
    assert snippet_html("a \x02b\x03 c", ["a b c"]) == "<mark class='ragbot-quote'>a b c</mark>"
    # A mark never crosses the edge of a <b> or <code>: it is closed and opened again there.
    mark = "<mark class='ragbot-quote'>"
    assert snippet_html("**Ingest reads PDF. It is RAG.** more", ["Ingest reads PDF."]) == \
        f"<b>{mark}Ingest reads PDF.</mark> It is RAG.</b> more"
    assert snippet_html("**Ingest reads PDF. It is RAG.** more", ["It is RAG."]) == \
        f"<b>Ingest reads PDF. {mark}It is RAG.</mark></b> more"
    assert snippet_html("Run `a. b` now. Next.", ["b now."]) == \
        f"Run <code>a. {mark}b</mark></code>{mark} now.</mark> Next."
    # A quote found twice is marked once, overlapping ones once, and never in a heading; a
    # citation mark between two words reads as the space strip_citation_marks leaves.
    assert snippet_html("A cat sat. A cat sat. The end.", ["A cat sat.", "cat sat. A cat"]) == \
        f"{mark}A cat sat.</mark> A cat sat. The end."
    assert snippet_html("# Lewis made it\nLewis made it in 2020.", ["Lewis made it"]) == \
        f"<b>Lewis made it</b><br>{mark}Lewis made it</mark> in 2020."
    assert snippet_html("Made by Lewis[9]at FAIR.", ["Made by Lewis at FAIR."]) == f"{mark}Made by Lewis[9]at FAIR.</mark>"


def test_quotes_by_passage_gives_each_passage_the_sentences_that_cite_it():
    from ragbot.answer.evidence import quotes_by_passage

    assert quotes_by_passage("GANs came in 2014 [1]. Lewis described RAG [2]. Both are models [1, 3].") == {
        1: ["GANs came in 2014.", "Both are models."], 2: ["Lewis described RAG."], 3: ["Both are models."]}
    # A generated reply: a run of marks is one cut, and a one-word fragment left by a mark in
    # the middle of a sentence marks nothing.
    assert quotes_by_passage("It [1] is used in GANs [2][3]. Seats: 4 [4]") == {
        2: ["is used in GANs."], 3: ["is used in GANs."], 4: ["Seats: 4"]}


def test_the_sources_panel_marks_what_the_answer_quotes_and_not_a_correction(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    *_, (history, panel, _) = handlers.respond("When were GANs introduced and by whom?", [], "c-quote", 5, 0.0,
                                               False, session="s-quote")
    answer_id = history[-1]["metadata"]["id"]
    quoted = corpus_bot.feedback.answer_trace(answer_id)["answer"]
    marked = re.findall(r"<mark class='ragbot-quote'>(.*?)</mark>", panel)
    assert "Goodfellow" in quoted and marked == [quoted.replace(" [1]", "")]  # the one sentence quoted, whole
    # The panel of the stored answer (a reload, a click on it) marks the same.
    assert handlers.sources_of(history, len(history) - 1, "s-quote", False).count("ragbot-quote") == len(marked)
    # A saved correction is the user's text: nothing in the passage it cites is marked as said.
    correction = Answer(question="q", answer=quoted, refused=False, citations=[Citation(
        n=1, source="gans.md", page=None, chunk_id=1, score=0.5, text="x")], passages=[Passage(
            chunk_id=1, source="gans.md", title="GANs", section="", page=None, text=quoted.replace(" [1]", ""),
            score=0.5, rank=1)],
        prompt="", raw_reply="", model="m", adapter=None, timings_ms={}, tokens={}, correction_of="a1",
        corrected_question="q")
    assert "ragbot-quote" not in render_sources(correction, show_all=False)


def test_a_correction_citing_another_passage_than_the_one_that_says_it_gets_a_hint(corpus_bot):
    """The panel lists only the cited passages by default, so a correction may cite [1] for a
    sentence that passage [n] holds; the note names [n]. Citing [n], or writing what no passage
    says, gets no hint. The correction is saved as written either way."""
    handlers = ChatHandlers(corpus_bot)
    *_, (history, _, _) = handlers.respond("What is a GAN?", [], "c", 5, 0.0, False, session="s1")
    answer_id = history[1]["metadata"]["id"]
    trace = corpus_bot.feedback.answer_trace(answer_id)
    texts = corpus_bot.store.chunks([p["chunk_id"] for p in trace["passages"]])
    says = [p["rank"] for p in trace["passages"] if "two neural networks" in texts[p["chunk_id"]].text]
    other = next(p["rank"] for p in trace["passages"] if p["rank"] not in says)
    assert says, "the GAN definition is retrieved"
    definition = "A generative adversarial network is made of two neural networks trained against each other"
    try:
        hinted = handlers.on_comment(history, "", f"{definition} [{other}].", session="s1")
        assert f"Passage \\[{says[0]}\\] of that answer is closer to what your correction says" in hinted, hinted
        assert corpus_bot.feedback.feedback(answer_id).correction == f"{definition} [{other}]."
        assert "closer" not in handlers.on_comment(history, "", f"{definition} [{says[0]}].", session="s1")
        assert "closer" not in handlers.on_comment(history, "", f"Canberra [{other}].", session="s1")
    finally:  # the data dir is shared by the read-only tests: the correction is taken back
        corpus_bot.feedback.set_feedback(answer_id, None)


def test_text_in_a_status_line_is_shown_as_typed():
    """The status lines are Markdown: a question or file name there must not become a link or markup."""
    assert literal("[x](http://e.vil) <img src=x> *a* & b") == \
        r"\[x\]\(http\:\/\/e\.vil\) &lt;img src\=x&gt; \*a\* &amp; b"


def test_like_uses_the_answer_id_carried_by_the_message(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    *_, (history, _, _) = handlers.respond("What is the capital of Australia?", [], "c", 5, 0.0, False, session="s1")
    answer_id = history[1]["metadata"]["id"]  # declined before any model, still logged
    assert handlers.votes(history, "s1") == [None]
    assert handlers.on_like(history, 1, True, user="ann", session="s1") == "Thanks: marked helpful."
    assert corpus_bot.feedback.feedback(answer_id).vote == 1
    # The thumbs the page is sent: the stored vote, for this session's answers only.
    assert handlers.votes(history, "s1") == ["Like"] and handlers.votes(history, "other|tab") == [None]
    assert handlers.votes(history + [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                          "s1") == ["Like", None]
    assert handlers.on_comment(history, "too short", "Canberra [1].", user="ann", session="s1") == (
        r"Saved your comment and correction with answer 1 (“What is the capital of Australia\?”). "
        "Questions that ask the same get your correction from now on.")
    saved = corpus_bot.feedback.feedback(answer_id)
    assert (saved.vote, saved.comment, saved.correction) == (1, "too short", "Canberra [1].")
    assert handlers.on_like(history, 1, False, session="s1") == "Thanks: marked unhelpful."
    assert handlers.votes(history, "s1") == ["Dislike"]
    # The correction stays, and the page says so and how to withdraw it (helper-89 expected the
    # vote's removal to take it back, and nothing said otherwise).
    assert handlers.on_like(history, 1, "", session="s1") == (
        "Vote removed. The correction saved with this answer is kept and still answers this question: to "
        "withdraw it, ask again and give its answer a thumbs-down.")
    assert corpus_bot.feedback.feedback(answer_id).vote is None
    assert [h["vote"] for h in corpus_bot.feedback.history(answer_id)] == [1, 1, -1, None]
    # A [n] past the passages the answer showed names none: said, and not read as a source.
    shown = len(corpus_bot.feedback.answer_trace(answer_id)["passages"])
    assert shown >= 2
    assert handlers.on_comment(history, "", f"Canberra [{shown + 1}].", session="s1").endswith(
        rf"Its \[{shown + 1}\] names no passage: that answer had passages \[1\] to \[{shown}\] (“Show all retrieved "
        "passages” lists them), so it is not read as a source.")
    assert corpus_bot.feedback.corrected_passages() == []
    # So does [0] (the numbers start at 1): it was dropped without a word.
    assert handlers.on_comment(history, "", "Canberra [0].", session="s1").endswith(
        rf"Its \[0\] names no passage: that answer had passages \[1\] to \[{shown}\] (“Show all retrieved "
        "passages” lists them), so it is not read as a source.")
    assert handlers.on_comment(history, "", f"Canberra [2][{shown + 1}, {shown + 2}].", session="s1").endswith(
        rf"Its \[{shown + 1}\], \[{shown + 2}\] name no passage: that answer had passages \[1\] to \[{shown}\] "
        "(“Show all retrieved passages” lists them), so they are not read as sources.")
    second = corpus_bot.feedback.answer_trace(answer_id)["passages"][1]["chunk_id"]
    assert corpus_bot.feedback.corrected_passages() == [{"answer_id": answer_id, "question": history[0]["content"],
                                                          "chunk_ids": [second]}]  # its [2] still is one
    assert "names no passage" not in handlers.on_comment(history, "", "Canberra [1].", session="s1")
    assert [row["answer_id"] for row in corpus_bot.feedback.corrected_passages()] == [answer_id]
    # A correction that cites nothing is kept, with a nudge to cite (it was taken without a word:
    # helper-81's drive); the refusal sentence needs no source, and one that cites gets no nudge.
    assert handlers.on_comment(history, "", "Canberra.", session="s1").endswith(
        rf"It cites no passage: if one of that answer's passages (\[1\] to \[{shown}\]) holds the answer, write "
        r"the correction again citing it as \[n\], so that it is shown with its source.")
    assert corpus_bot.feedback.feedback(answer_id).correction == "Canberra."
    assert "cites no passage" not in handlers.on_comment(history, "", REFUSAL, session="s1")
    assert "cites no passage" not in handlers.on_comment(history, "", "Canberra [1].", session="s1")
    assert handlers.on_like(history, 0, True, session="s1").startswith("This message has no recorded answer")
    assert handlers.on_like(history, 7, True, session="s1").startswith("This message has no recorded answer")
    # The data dir is shared by the read-only tests: a correction left in it would answer this
    # question for them from now on (corrections.py), so it is taken back.
    corpus_bot.feedback.set_feedback(answer_id, None)


def test_feedback_for_an_answer_this_session_was_not_given_is_refused(corpus_bot, caplog):
    """A client can send back any history; only answer ids the server gave that session count."""
    handlers = ChatHandlers(corpus_bot)
    *_, (history, _, _) = handlers.respond("What is the capital of Australia?", [], "c", 5, 0.0, False, session="ann|tab1")
    answer_id = history[1]["metadata"]["id"]
    refused = "Not saved: that answer was not given in this session."
    assert handlers.on_like(history, 1, True, session="mallory|tab9") == refused
    assert handlers.votes(history, "mallory|tab9", clicked=1) == [""]  # the refused click is taken off the page
    assert handlers.on_comment(history, "", "Bad answer [1].", session="mallory|tab9") == refused
    forged = [history[0], {"role": "assistant", "content": "x", "metadata": {"id": "no-such-answer"}}]
    assert handlers.on_like(forged, 1, True, session="ann|tab1") == refused
    assert corpus_bot.feedback.feedback(answer_id) is None
    assert "not an answer this session was given" in caplog.text


def test_respond_streams_then_attaches_the_answer_id_and_sources(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    # Each step as the page received it (the handler updates one history list in place).
    steps = [copy.deepcopy(step) for step in
             handlers.respond("When were GANs introduced and by whom?", [], "conv-1", 5, 0.0, False, session="s")]
    history, sources, box = steps[-1]
    # The question shows at once, with an empty answer and a note, before anything is searched.
    first_history, first_note, _ = steps[0]
    assert first_history[-2]["content"] == "When were GANs introduced and by whom?"
    assert first_history[-1]["content"] == "" and "Answering" in first_note
    # The text shown while answering is the text that stays: nothing is taken back.
    shown = [step[0][-1]["content"] for step in steps[1:-1]]
    assert shown and all(text == history[-1]["content"] for text in shown)
    assert box == "" and history[-2] == {"role": "user", "content": "When were GANs introduced and by whom?"}
    answer_id = history[-1]["metadata"]["id"]
    trace = corpus_bot.feedback.answer_trace(answer_id)
    assert trace["conversation_id"] == "conv-1" and trace["turn"] == 1
    assert "gans.md" in sources


def test_upload_validates_and_ingests_with_the_cli_messages(make_bot, tmp_path):
    bot = make_bot()
    handlers = ChatHandlers(bot, max_upload_mb=1)
    good = tmp_path / "notes.md"
    good.write_text("# Notes\n\nThe staging server restarts every Sunday at 03:00.\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ\x90\x00")
    big = tmp_path / "big.txt"
    big.write_text("x " * (600 * 1024))
    hostile = tmp_path / "..evil.md"
    hostile.write_text("# Evil\n\nStill just text.\n")
    odd = tmp_path / "to?ol.exe"  # renamed, then refused: no name it is not stored under is said
    odd.write_bytes(b"MZ")
    legacy = tmp_path / "horaires.txt"  # written by an older program: Latin-1, not UTF-8
    legacy.write_bytes("Le caf\u00e9 na\u00eff ouvre \u00e0 huit heures, pr\u00e8s de la for\u00eat.\n".encode("latin-1"))
    status = list(handlers.on_upload([str(good), str(empty), str(exe), str(big), str(hostile), str(odd),
                                      str(legacy)]))[-1]
    assert "renamed: ..evil.md is stored as evil.md" in status  # the name stored is said (helper-54)
    assert "renamed: notes.md" not in status and "renamed: to?ol.exe" not in status
    assert "failed: tool.exe: unsupported file type" in status
    assert "failed: big.txt: larger than the 1 MB upload limit" in status
    assert "failed: empty.txt: empty file" in status
    assert "added 3" in status
    assert "read as cp1252: horaires.txt: not UTF-8" in status  # a guess, said
    uploads = bot.settings.data_dir / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == ["evil.md", "horaires.txt", "notes.md"]  # the failed one is not kept
    assert bot.search("When does the staging server restart?", k=1)[0].source == str(uploads / "notes.md")
    assert list(handlers.on_upload([])) == ["No file chosen."]
    assert not (tmp_path.parent / "evil.md").exists()
    assert Path(bot.store.documents()[0].source).parent == uploads


def test_an_empty_or_overlong_question_changes_nothing_and_says_why(corpus_bot):
    from ragbot.interfaces.rendering import MAX_QUESTION_CHARS

    handlers = ChatHandlers(corpus_bot)
    assert handlers.question_problem("   ") == "Type a question first."
    long = "why " * (MAX_QUESTION_CHARS // 4 + 1)
    assert handlers.question_problem(long).startswith(f"A question can be at most {MAX_QUESTION_CHARS} characters")
    assert handlers.question_problem("What is RAG?") is None
    before = corpus_bot.store._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert list(handlers.respond("  ", [{"role": "user", "content": "q"}], "c", 5, 0.0, False, session="s")) == []
    assert list(handlers.respond(long, [], "c", 5, 0.0, False, session="s")) == []
    assert corpus_bot.store._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == before


def test_uploads_keep_their_names_never_replace_each_other_and_leave_no_temporary_copy(make_bot, tmp_path,
                                                                                        monkeypatch):
    """Unicode names are kept; another file with an earlier upload's name gets the content's hash
    in its name; a failed re-upload leaves the earlier version and its chunks; Gradio's own
    copies are removed once ingested."""
    gradio_tmp = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(gradio_tmp))
    bot = make_bot()
    handlers = ChatHandlers(bot)

    def gradio_copy(name: str, text: str) -> str:
        folder = gradio_tmp / f"{abs(hash((name, text)))}"
        folder.mkdir(parents=True)
        (folder / name).write_text(text, encoding="utf-8")
        return str(folder / name)

    status = list(handlers.on_upload([gradio_copy("Übersicht über Pumpen.md", "# Pumpen\n\nDie Quell-Pumpe hebt Wasser.\n")]))[-1]
    assert "added: Übersicht über Pumpen.md" in status
    first = gradio_copy("notes.md", "# Notes\n\nThe staging server restarts every Sunday.\n")
    assert "added: notes.md" in list(handlers.on_upload([first]))[-1]
    second = gradio_copy("notes.md", "# Other notes\n\nThe build server restarts every Monday.\n")
    status = list(handlers.on_upload([second]))[-1]
    [renamed] = [p.name for p in (bot.settings.data_dir / "uploads").glob("notes-*.md")]
    assert f"added: {renamed}" in status
    # Two documents of one name answer side by side: said (helper-89 uploaded an edited file and
    # the old version went on answering, unsaid).
    assert status.endswith("also stored: notes.md (an earlier upload). Both are searched, so an answer may "
                           "quote either; if this is a new version, delete the other under “Your documents”.")
    # A name that merely ends in eight hex digits is its own ("invoice-20250101" is no hash).
    for day in ("20250101", "20250201"):
        status = list(handlers.on_upload([gradio_copy(f"invoice-{day}.md", f"# Invoice\n\nPaid on {day}.\n")]))[-1]
        assert f"added: invoice-{day}.md" in status and "also stored" not in status, status
    uploads = bot.settings.data_dir / "uploads"
    assert "Sunday" in (uploads / "notes.md").read_text() and "Monday" in (uploads / renamed).read_text()
    # The same content again changes nothing; a broken file under a used name leaves the earlier one.
    # Said in words, without the counts of an ingest that stored nothing ("added 0, ... 0 chunks/s").
    status = list(handlers.on_upload([gradio_copy("notes.md", "# Notes\n\nThe staging server restarts every Sunday.\n")]))[-1]
    assert status == "already stored as it is, its passages up to date: notes.md", status
    status = list(handlers.on_upload([gradio_copy("notes.md", "")]))[-1]
    assert "failed: notes-" in status and "empty file" in status
    assert (uploads / "notes.md").is_file()
    assert bot.search("When does the staging server restart?", k=1)[0].source == str(uploads / "notes.md")
    assert not list(gradio_tmp.rglob("*.md"))  # no temporary copy left behind


def test_an_upload_with_the_bytes_of_a_stored_document_is_not_kept_twice(make_bot, docs, tmp_path):
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    # An edited version of a file of the user's folders, uploaded: both are stored, and said.
    edited = tmp_path / "bananas.txt"
    edited.write_text("Bananas are yellow fruit grown in tropical regions; they ripen in a week.\n")
    status = list(handlers.on_upload([str(edited)]))[-1]
    assert f"also stored: bananas.txt ({docs / 'bananas.txt'}). Both are searched" in status, status
    handlers.delete_document(str(bot.settings.data_dir / "uploads" / "bananas.txt"))
    assert bot.store.counts()[0] == 3
    copy = tmp_path / "Paris guide.md"
    copy.write_bytes((docs / "paris.md").read_bytes())
    status = list(handlers.on_upload([str(copy)]))[-1]
    assert f"not stored twice: Paris guide.md has the same content as {docs / 'paris.md'}, which is stored" in status
    assert not list((bot.settings.data_dir / "uploads").iterdir())  # ragbot's copy of it is gone
    assert bot.store.counts()[0] == 3 and bot.store.copies() == []  # and so is its record as a copy
    # A copy stored before copies were told apart goes when it is re-ingested from the library.
    bot.ingest([copy], store_copies=True)
    message = handlers.reingest_document(str(copy))
    assert "has the same content as" in message and "this copy was removed from the library" in message
    assert bot.store.document(str(copy)) is None and bot.store.counts()[0] == 3
    assert bot.store.copies() == [(str(copy), str(docs / "paris.md"))]  # the user's file: searched as a copy
    # Deleting the document from the library stores that copy in its place, and says so.
    message = handlers.delete_document(str(docs / "paris.md"))
    assert message.startswith(r"Deleted paris\.md:") and "searched in its place" in message
    assert bot.search("When was the Eiffel Tower finished?", k=1)[0].source == str(copy)


def test_reingesting_a_changed_document_with_copies_says_what_happened_to_it(make_bot, docs, tmp_path):
    """Re-ingesting a changed document also stores its copies (they hold its old text), which
    the ingest reports as added and duplicates; the library spoke of those as if they were the
    document, and said it was removed (helper-44's review)."""
    bot = make_bot()
    bot.ingest([docs])
    bot.ingest(copies_in_folders(docs / "paris.md", tmp_path))
    (docs / "paris.md").write_text("# Paris\n\nThe Louvre is the most visited museum in the world.\n")
    message = ChatHandlers(bot).reingest_document(str(docs / "paris.md"))
    assert message.startswith(r"paris\.md was read again and its passages replaced: ")
    assert "removed" not in message and "updated 1" in message, message
    assert bot.store.document(str(docs / "paris.md")) is not None
    assert bot.store.document(str(tmp_path / "a" / "paris.md")) is not None  # the old text, still searched


def test_the_document_library_lists_deletes_and_reingests(make_bot, docs, tmp_path):
    bot = make_bot()
    handlers = ChatHandlers(bot)
    assert not handlers.has_documents()  # the page opens "Add documents" for an empty library
    bot.ingest([docs])
    assert handlers.has_documents()
    note = tmp_path / "pump.md"
    note.write_text("# Pump\n\nThe Quell pump lifts water from the Zorblat mine.\n")
    stored = []
    list(handlers.on_upload([str(note)], stored))
    assert stored == [str(handlers.uploads / "pump.md")]  # the page then chooses it in the library
    rows, choices = handlers.library()
    # By name, as a folder lists them (not by when they were added: the upload came last).
    assert [r[0] for r in rows] == ["bananas.txt", "paris.md", "pump.md", "volcano.html"]
    assert [label.split(" (")[0] for label, _ in choices] == [r[0] for r in rows]
    details = {r[0]: r[1] for r in rows}
    assert details["pump.md"] == "markdown, 1 chunk, from upload" and details["paris.md"].endswith(f", from {docs.name}")
    # The choice names the folder by its last name (the whole path only where two documents of
    # one name need more of it: test_a_clicked_row_of_the_library_chooses_the_document_it_shows).
    assert f"paris.md ({docs.name})" in [label for label, _ in choices]
    upload = next(source for label, source in choices if label.startswith("pump.md"))
    assert handlers.delete_document("/etc/passwd") == "Choose a document first."  # not a stored document
    # The page asks before deleting, and says when an upload's own copy goes too.
    assert handlers.deletion_question("/etc/passwd") is None
    assert handlers.deletion_question(upload).startswith(r"Delete pump\.md? Its passages and ragbot's copy")
    assert handlers.deletion_question(str(docs / "paris.md")) == (
        r"Delete paris\.md? Its passages go; answers already given stay.")
    assert handlers.reingest_document(None) == "Choose a document first."
    # In words: "unchanged 1" read as if the button had done nothing.
    assert handlers.reingest_document(str(docs / "paris.md")) == (
        r"paris\.md is as it was when ingested (the same bytes, read the same way): its passages are up to date.")
    # Deleting a document the page searches only changed that choice without a word (helper-54).
    said = handlers.delete_document(upload, [upload, str(docs / "paris.md")])
    assert said.startswith(r"Deleted pump\.md:") and said.endswith("chosen to search; the others still are.")
    assert not Path(upload).exists()  # ragbot's copy of the upload goes with it
    assert all("pump.md" not in p.source for p in bot.search("Which pump lifts water from the Zorblat mine?", k=10))
    # The other chosen document is gone already (another tab deleted it): no "the others still are".
    said = handlers.delete_document(str(docs / "paris.md"), [str(docs / "paris.md"), upload])
    assert said.startswith(r"Deleted paris\.md:") and said.endswith("every document is searched now.")
    assert (docs / "paris.md").is_file()  # a document from the user's own folder is only forgotten


def test_a_fault_in_a_library_action_names_the_document_not_a_bare_error(make_bot, docs, tmp_path, monkeypatch,
                                                                          caplog):
    """An exception that is not a RagbotError (a bug; a data dir changed under the server) showed
    only Gradio's red 'Error': the page now says which document was left as it was."""
    import sqlite3

    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)

    def fault(*args, **kwargs):
        raise sqlite3.OperationalError("no such column: c.sha256")

    remove, ingest = bot.remove, bot.ingest
    monkeypatch.setattr(bot, "remove", fault)
    monkeypatch.setattr(bot, "ingest", fault)
    told = "because of an unexpected error (OperationalError); the server's log has the details."
    assert handlers.delete_document(str(docs / "paris.md")) == rf"paris\.md was not deleted, {told}"
    assert handlers.reingest_document(str(docs / "paris.md")) == rf"paris\.md was not re-ingested, {told}"
    note = tmp_path / "pump.md"
    note.write_text("# Pump\n\nThe Quell pump lifts water.\n")
    assert list(handlers.on_upload([str(note)]))[-1] == f"Not ingested: pump.md, {told}"
    assert list(handlers.uploads.glob("*")) == []  # ragbot's copy of the upload goes, as for a RagbotError
    assert "no such column: c.sha256" in caplog.text  # the log has the details
    assert bot.store.document(str(docs / "paris.md")) is not None

    # A fault after the work was stored says so: the document is gone, or read again, or kept.
    def after(work):
        def run(*args, **kwargs):
            work(*args, **kwargs)
            raise sqlite3.OperationalError("disk I/O error")
        return run

    monkeypatch.setattr(bot, "remove", after(remove))
    monkeypatch.setattr(bot, "ingest", after(ingest))
    followed = "but an unexpected error followed (OperationalError); the server's log has the details."
    (docs / "volcano.html").write_text("<html><body><p>Stromboli erupts every few minutes.</p></body></html>")
    assert handlers.reingest_document(str(docs / "volcano.html")) == rf"volcano\.html was re-ingested, {followed}"
    assert handlers.delete_document(str(docs / "paris.md")) == rf"paris\.md was deleted, {followed}"
    assert list(handlers.on_upload([str(note)]))[-1] == f"Stored pump.md, {followed}"
    assert [p.name for p in handlers.uploads.glob("*")] == ["pump.md"]  # stored, so kept
    assert bot.store.document(str(handlers.uploads / "pump.md")) is not None


def test_issued_answer_ids_are_bounded(corpus_bot, monkeypatch):
    from ragbot.interfaces import handlers as chat

    monkeypatch.setattr(chat, "MAX_SESSIONS", 3)
    handlers = ChatHandlers(corpus_bot)
    for n in range(5):
        handlers._issue(f"s{n}", f"id{n}")
    handlers._issue("s2", "again")  # used again: now the most recent
    assert list(handlers._issued) == ["s3", "s4", "s2"]
    assert not handlers._was_issued("s0", "id0") and handlers._was_issued("s2", "id2")


def test_the_note_on_a_follow_ups_correction_says_it_was_read_with_the_question_before(make_bot):
    """helper-60 corrected "What is mode collapse?", asked after another question and searched
    with it, was told "Questions that ask the same get your correction from now on", and asked
    the same words in a new conversation got the documents' answer. The words asked on their own
    now get it (corrections.py, docs §42); after another question, only after one like the
    question before. The note says which, and the first case is checked here."""
    bot = make_bot()
    assert bot.ingest([CORPUS / "gans.md"]).ok
    handlers = ChatHandlers(bot)
    *_, (history, _, _) = handlers.respond("What is a GAN?", [], "c", 5, 0.0, False, session="s")
    *_, (history, _, _) = handlers.respond("Who proposed it?", history, "c", 5, 0.0, False, session="s")
    (_, second), (_, first) = handlers.answer_choices(history)
    assert bot.feedback.answer_trace(second)["retrieval_query"] == "What is a GAN? Who proposed it?"
    assert handlers.on_comment(history, "", "Ian Goodfellow [1].", session="s", answer_id=second) == (
        r"Saved your correction with answer 2 (“Who proposed it\?”). That question was read together with what the "
        r"conversation asked before it (“What is a GAN\?”): asked on its own, or after a question like that, it gets "
        r"your correction from now on.")
    *_, (alone, _, _) = handlers.respond("Who proposed it?", [], "c2", 5, 0.0, False, session="s")
    assert alone[-1]["content"].startswith('<span class="ragbot-correction">Saved correction:</span> Ian Goodfellow [')
    assert handlers.on_comment(history, "", "Two networks [1].", session="s", answer_id=first).endswith(
        "Questions that ask the same get your correction from now on.")


def test_a_comment_goes_to_the_chosen_answer_of_the_conversation(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    *_, (history, _, _) = handlers.respond("Where is the Eiffel Tower?", [], "c", 5, 0.0, False, session="s")
    *_, (history, _, _) = handlers.respond("Where is Mount Etna?", history, "c", 5, 0.0, False, session="s")
    choices = handlers.answer_choices(history)
    assert [label for label, _ in choices] == ["2. Where is Mount Etna?", "1. Where is the Eiffel Tower?"]
    first_id = choices[1][1]
    assert handlers.on_comment(history, "", "In Paris [1].", session="s", answer_id=first_id) == (
        r"Saved your correction with answer 1 (“Where is the Eiffel Tower\?”). "
        "Questions that ask the same get your correction from now on.")
    assert bot.feedback.feedback(first_id).correction == "In Paris [1]."
    assert handlers.on_comment(history, "right city", "", session="s", answer_id=first_id).startswith("Saved your comment")
    saved = bot.feedback.feedback(first_id)
    assert (saved.comment, saved.correction) == ("right city", "In Paris [1].")  # a comment keeps the correction
    assert bot.feedback.feedback(choices[0][1]) is None  # the latest answer is untouched
    assert handlers.on_comment(history, "x", "", session="s", answer_id="not-given-here").startswith("Not saved")


def test_settings_sent_by_a_client_are_kept_to_the_pages_ranges(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    *_, (history, _, _) = handlers.respond("What is a GAN?", [], "c", 10**9, 99.0, False, session="s")
    trace = corpus_bot.feedback.answer_trace(history[-1]["metadata"]["id"])
    assert len(trace["passages"]) == 20 and trace["params"]["temperature"] == 1.5


def test_an_answer_whose_cited_passage_was_deleted_says_so(make_bot, docs):
    """It said "The answer cites no passage." under an answer that shows [1] (helper-43's drive)."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    *_, (history, _, _) = handlers.respond("When was the Eiffel Tower completed?", [], "c-gone", 5, 0.0, False,
                                           session="s1")
    assert "[1]" in history[1]["content"] or "source-1" in history[1]["content"]
    handlers.delete_document(str(docs / "paris.md"))
    shown = handlers.sources_of(history, 1, "s1", False)
    assert "this answer cites ([1]) is no longer stored" in shown and "cites no passage" not in shown, shown


def test_citations_link_to_their_passages_and_read_back_as_text():
    from ragbot.interfaces.rendering import message_text, shown_answer

    said = 'Pumps move <img src="http://127.0.0.2/x.png"> water [1, 2] and air [3].'
    html_ = shown_answer(said)
    assert '<a class="ragbot-cite" href="#source-1">1</a>, <a class="ragbot-cite" href="#source-2">2</a>' in html_
    assert "<img" not in html_ and "&lt;img" in html_
    assert message_text({"role": "assistant", "content": html_}) == said


def test_sources_of_an_earlier_answer_only_for_the_session_that_got_it(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    *_, (history, latest, _) = handlers.respond("When were GANs introduced and by whom?", [], "c-src", 5, 0.0, False,
                                                session="s1")
    shown = handlers.sources_of(history, 1, "s1", False)
    assert shown is not None and "id='source-1'" in shown and "gans.md" in shown
    assert handlers.sources_of(history, 1, "s2", False) is None  # another session never got that answer
    assert handlers.sources_of(history, 0, "s1", False) is None  # a question, not an answer
    forged = [history[0], {**history[1], "metadata": {"id": "not-an-id"}}]
    assert handlers.sources_of(forged, 1, "s1", False) is None
    assert handlers.sources_of(history, 7, "s1", False) is None


def test_choosing_the_answer_to_correct_shows_its_sources(corpus_bot):
    """The correction form's answer choice shows that answer's passages, whose [n] a correction
    cites, not those of the answer the panel showed before."""

    handlers = ChatHandlers(corpus_bot)
    *_, (history, _, _) = handlers.respond("When were GANs introduced and by whom?", [], "c-which", 5, 0.0, False,
                                           session="s1")
    *_, (history, latest, _) = handlers.respond("What does the encoder of a VAE output?", history, "c-which", 5, 0.0,
                                                False, session="s1")
    assert "vaes.md" in latest
    (_, last_id), (_, first_id) = handlers.answer_choices(history)
    assert first_id == answer_id_of(history[1])
    chosen = handlers.sources_of_answer(history, first_id, "s1", False)
    assert chosen == handlers.sources_of(history, 1, "s1", False) and "gans.md" in chosen and "vaes.md" not in chosen
    assert handlers.sources_of_answer(history, last_id, "s1", False) == handlers.sources_of(history, 3, "s1", False)
    assert handlers.sources_of_answer(history, first_id, "s2", False) is None  # not this session's answer
    assert handlers.sources_of_answer(history, "not-an-id", "s1", False) is None
    assert handlers.sources_of_answer(history, None, "s1", False) is None
    # Redrawn with all passages (the show-all toggle): the chosen answer's, else the latest's.
    assert handlers.shown_sources(history, first_id, "s1", True) == handlers.sources_of(history, 1, "s1", True)
    assert handlers.shown_sources(history, None, "s1", True) == handlers.latest_sources(history, "s1", True)
    assert "ragbot-source" not in handlers.shown_sources(history, first_id, "s2", True)  # not that session's answers
    assert handlers.shown_sources(history, first_id, "s1", True).count("ragbot-source") > chosen.count("ragbot-source")


def test_chosen_documents_are_checked_against_the_stored_ones(corpus_bot):
    from conftest import CORPUS

    handlers = ChatHandlers(corpus_bot)
    gans = str(CORPUS / "gans.md")
    assert handlers.chosen_sources([]) == (None, None) and handlers.chosen_sources(None) == (None, None)
    assert handlers.chosen_sources([gans, "/etc/passwd", 7]) == ([gans], None)
    sources, problem = handlers.chosen_sources(["/etc/passwd"])
    assert sources is None and "None of the chosen documents" in problem


def test_a_question_searched_in_chosen_documents_says_so_in_its_sources(corpus_bot):
    """A refusal from the chosen documents alone is not a refusal from all of them: the panel
    names what was searched, when the answer comes and when it is shown again from the log."""
    from conftest import CORPUS

    handlers = ChatHandlers(corpus_bot)
    vaes = str(CORPUS / "vaes.md")
    assert handlers.start_turn("c", "browser:ann", "Who invented the transformer architecture?") is None
    *_, (history, panel, _) = handlers.respond("Who invented the transformer architecture?", [], "c", 5, 0.0,
                                               False, session="s", sources=[vaes])
    note = "Searched only the document chosen under “Your documents”: vaes.md."
    assert note in panel
    # The refusal itself says the chosen document lacks the answer ("the documents" read as all
    # of them), as given and as shown again; the log keeps the one refusal sentence.
    assert history[-1]["content"] == "I don't know: the chosen document does not contain the answer."
    assert handlers.reopen("c", "browser:ann", session="s2")[-1]["content"] == history[-1]["content"]
    assert corpus_bot.feedback.answer_trace(answer_id_of(history[-1]))["answer"] == REFUSAL
    assert note in handlers.sources_of(history, len(history) - 1, "s", False)
    # A refusal from it alone says how to search them all, in the panel and beside the chat's
    # refusal (one sentence for every refusal, which read as the whole library's).
    hint = f"{note} To search all of them, clear “Search only these documents”."
    assert hint in panel and hint in handlers.sources_of(history, len(history) - 1, "s", False)
    assert handlers.limited_refusal(history, [vaes]) == hint
    *_, (answered, _, _) = handlers.respond("What does a VAE's encoder output?", [], "c", 5, 0.0, False, session="s",
                                            sources=[vaes])
    assert corpus_bot.feedback.answer_trace(answer_id_of(answered[-1]))["refused"] is False
    assert handlers.limited_refusal(answered, [vaes]) is None  # an answer needs no such word
    assert "To search all" not in handlers.sources_of(answered, len(answered) - 1, "s", False)
    *_, (history, panel, _) = handlers.respond("Who invented the transformer architecture?", [], "c", 5, 0.0,
                                               False, session="s")
    assert handlers.limited_refusal(history, None) is None  # everything was searched
    from ragbot.interfaces.rendering import refusal_within

    assert refusal_within(2) == "I don't know: the 2 chosen documents do not contain the answer."
    # A saved correction that is the refusal is the user's words, not the search's (helper-56).
    from ragbot.interfaces.rendering import shown_answer

    assert shown_answer(REFUSAL, corrected=True, searched=1).endswith(REFUSAL)
    assert refusal_within(0) == "I don't know: none of the documents chosen to search is stored."
    assert "Searched only" not in panel and "Searched only" not in handlers.sources_of(history, 1, "s", False)
    # Names are shown as text, in order, however many were chosen.
    from ragbot.interfaces.rendering import searched_note

    assert searched_note(["/d/b.md", "/e/<img src=x>a.md", "/d/b.md"]) == (
        "<p class='ragbot-searched'>Searched only the 2 documents chosen under “Your documents”: "
        "&lt;img src=x&gt;a.md, b.md.</p>")
    # Two files of one name are told apart by their folders; an empty choice searched nothing.
    assert "x.md (a), x.md (b)." in searched_note(["/b/x.md", "/a/x.md"])
    assert "x.md (a/same), x.md (b/same)." in searched_note(["/r/b/same/x.md", "/r/a/same/x.md"])
    # Each as short as it can be: a third twin in a folder of its own needs only that folder's name.
    assert "x.md (a/same), x.md (b/same), x.md (other)." in searched_note(["/r/b/same/x.md", "/r/a/same/x.md",
                                                                          "/q/other/x.md"])
    assert "No document was searched" in searched_note([])
    # The choice's label says what a question searches now (it said "none chosen" while some were).
    from ragbot.interfaces.rendering import search_label

    assert search_label([]) == "Search only these documents (none chosen: all of them)"
    assert search_label(["/d/b.md", "/d/c.md"]) == "Search only these documents (2 chosen: only they are searched)"
    # A correction answers whatever was chosen: its panel does not claim the choice.
    answer = Answer(question="q", answer="a [1]", refused=False, citations=[], passages=[], prompt="", raw_reply="",
                    model="m", adapter=None, timings_ms={}, tokens={}, correction_of="x", corrected_question="q")
    assert "Searched only" not in render_sources(answer, False, searched=["/d/b.md"])
    assert "Searched only" in render_sources(Answer(**{**answer.__dict__, "correction_of": None}), False,
                                             searched=["/d/b.md"])


def test_a_clicked_row_of_the_library_chooses_the_document_it_shows(make_bot, docs, tmp_path):
    """The page sends the row's number and cells; both are checked against the library as stored."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    rows, choices = handlers.library()
    paris = next(i for i, (_, source) in enumerate(choices) if source.endswith("paris.md"))
    assert handlers.document_in_row([paris, 1], rows[paris]) == choices[paris][1]
    # The library changed since the page drew it: the row's cells still name one document.
    assert handlers.document_in_row([paris + 1, 0], rows[paris]) == choices[paris][1]
    # Cells no stored document shows, or anything else a client sends: nothing is chosen.
    assert handlers.document_in_row([paris, 0], ["/etc/passwd", "text", "2026-01-01"]) is None
    assert handlers.document_in_row("0", rows[paris]) == choices[paris][1]  # no number: the cells alone
    assert handlers.document_in_row(None, None) is None and handlers.document_in_row([10**6, 0], "x") is None
    # Two documents whose rows read alike (one name, two folders of one name): the row's number decides.
    for folder in (tmp_path / "a" / "same", tmp_path / "b" / "same"):
        folder.mkdir(parents=True)
        (folder / "twin.md").write_text(f"# Twin\n\nThis twin lives in {folder.parent.name}.\n")
        assert bot.ingest([folder / "twin.md"]).ok
    rows, choices = handlers.library()
    twins = [i for i, (_, source) in enumerate(choices) if source.endswith("twin.md")]
    assert len(twins) == 2 and rows[twins[0]] == rows[twins[1]]
    # The choices name only as much of the folder as tells the two apart, and the last folder
    # of a document whose name is its own (not the whole path: helper-60's drive).
    assert [choices[i][0] for i in twins] == ["twin.md (a/same)", "twin.md (b/same)"]
    assert choices[paris][0] == f"paris.md ({docs.name})"
    assert [handlers.document_in_row([i, 0], rows[i]) for i in twins] == [choices[i][1] for i in twins]
    assert handlers.document_in_row([0, 0], rows[twins[0]]) is None  # not the row's number, and two read so


def test_the_library_keeps_what_is_chosen_while_it_is_stored(make_bot, docs):
    """A redraw (re-ingest, upload, delete, a page load) kept neither the chosen document nor,
    on a load, the documents chosen to search; what the page sends is checked."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    paris, volcano = str(docs / "paris.md"), str(docs / "volcano.html")
    rows, choices, chosen, searched = handlers.shelf([volcano, paris, volcano, "/etc/passwd", 3], paris)
    assert chosen == paris and searched == [volcano, paris]
    assert handlers.shelf("not a list", [paris])[2:] == (None, [])
    bot.remove([paris])
    assert handlers.shelf([volcano, paris], paris)[2:] == (None, [volcano])


def test_the_document_route_serves_stored_unchanged_pdfs_only_and_behind_the_login(make_bot, tmp_path):
    import shutil

    import httpx

    from conftest import ROOT, _free_port
    from ragbot.interfaces.app import serve

    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = folder / "report.pdf"
    shutil.copy(ROOT / "corpus" / "generative-ai-applications-by-industry.pdf", pdf)
    shutil.copy(ROOT / "corpus" / "gans.md", folder / "gans.md")
    bot = make_bot(default_corpus=None)
    assert bot.ingest([folder]).ok
    pdf_id, md_id = bot.store.document(str(pdf)).id, bot.store.document(str(folder / "gans.md")).id

    port = _free_port()
    app = serve(bot, "127.0.0.1", port, auth=[("ann", "s3cret")], prevent_thread_lock=True)
    try:
        base = f"http://127.0.0.1:{port}/ragbot/documents"
        with httpx.Client(timeout=30) as anyone:
            assert anyone.get(f"{base}/{pdf_id}").status_code == 401
        with httpx.Client(timeout=30) as ann:
            assert ann.post(f"http://127.0.0.1:{port}/login", data={"username": "ann", "password": "s3cret"}
                            ).status_code == 200
            served = ann.get(f"{base}/{pdf_id}")
            assert served.status_code == 200 and served.content == pdf.read_bytes()
            assert served.headers["content-type"] == "application/pdf"
            assert served.headers["x-content-type-options"] == "nosniff"
            assert ann.get(f"{base}/{md_id}").status_code == 404  # stored, but not a PDF
            assert ann.get(f"{base}/99999").status_code == 404
            assert ann.get(f"{base}/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)  # ids only
            pdf.write_bytes(pdf.read_bytes() + b"\n% changed\n")  # the page numbers may no longer hold
            assert ann.get(f"{base}/{pdf_id}").status_code == 410
    finally:
        app.close()


def test_message_index_names_a_position_never_a_lookalike():
    from ragbot.interfaces.rendering import message_at, message_index

    same = {"role": "user", "content": "Why?"}
    history = [same, {"role": "assistant", "content": "a"}, dict(same), {"role": "assistant", "content": "b"}]
    assert message_index(history, 2) == 2 and message_index(history, [2, 0]) == 2  # not the first "Why?"
    assert message_at(history, 3)["content"] == "b"
    for bad in (-1, 4, "x", None, [], [9]):
        assert message_index(history, bad) is None
    assert message_index(["not a message"], 0) is None


def test_stop_pressed_as_the_question_appears_ends_the_answer(corpus_bot):
    handlers = ChatHandlers(corpus_bot)
    steps = handlers.respond("When were GANs introduced and by whom?", [], "c-stop", 5, 0.0, False, session="s9")
    history, _, _ = next(steps)  # the question shows; nothing is searched yet
    assert history[-1]["content"] == "" and handlers.answering("s9")
    assert handlers.request_stop("s9") == "Stopping…"
    *_, (history, note, _) = steps
    assert note.startswith("<p>Stopped") and "metadata" not in history[-1] and not handlers.answering("s9")
    assert history[-1]["content"].endswith(STOPPED_MARK)  # the message says it is not kept, by its vote buttons
    assert "stopped" not in message_text(history[-1])  # read back (a generated answer's history): only its text


def test_the_server_knows_whether_a_new_conversation_came_after_the_question(corpus_bot):
    """An answer's last step hides the suggestions unless a New conversation came meanwhile. The
    page sends that step the chat as it was when the step was sent, possibly before the New
    conversation emptied it, and Gradio reads the conversation's id when the step runs, possibly
    after the New conversation replaced it (CI rehearsals hid the new suggestions so, twice): the
    server keeps the order of each session's last question and last New conversation."""
    handlers = ChatHandlers(corpus_bot)
    handlers.started_asking("s")
    assert not handlers.new_since_asked("s")  # no New conversation yet: the answer's own step hides them
    handlers.started_new("s")
    assert handlers.new_since_asked("s")  # the New conversation's suggestions stay
    handlers.started_asking("s")  # asked in the new conversation: its suggestions go
    assert not handlers.new_since_asked("s")
    handlers.started_new("another session")
    assert not handlers.new_since_asked("s") and handlers.new_since_asked("another session")


def test_a_stop_that_comes_after_the_answer_was_kept_shows_the_answer_kept(corpus_bot, monkeypatch):
    """helper-76's drive: Stop pressed as an answer was being logged showed it as stopped and "not
    kept", though it was stored (a reload brought it back). An answer logged before the Stop took
    effect is the finished answer, with its id to vote on."""
    handlers = ChatHandlers(corpus_bot)
    ask_stream = corpus_bot.ask_stream

    def stop_pressed_late(*args, **kwargs):
        for event in ask_stream(*args, **kwargs):
            yield event
            if not isinstance(event, str):  # the answer has been logged and handed over
                assert handlers.request_stop("s10") == "Stopping…"

    monkeypatch.setattr(corpus_bot, "ask_stream", stop_pressed_late)
    *_, (history, note, _) = handlers.respond("When were GANs introduced and by whom?", [], "c-late-stop", 5, 0.0,
                                              False, session="s10")
    answer_id = history[-1]["metadata"]["id"]
    assert corpus_bot.feedback.answer_trace(answer_id)["question"] == "When were GANs introduced and by whom?"
    assert "Stopped" not in note and STOPPED_MARK not in history[-1]["content"] and "[1]" in note


def test_an_upload_that_cannot_be_ingested_now_leaves_no_copy(make_bot, tmp_path, monkeypatch):
    from conftest import lock_held_elsewhere
    from ragbot.interfaces import handlers as handlers_module

    monkeypatch.setattr(handlers_module, "PAGE_WRITE_WAIT", 0.2)
    bot = make_bot()
    handlers = ChatHandlers(bot)
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nThe staging server restarts on Sundays.\n")
    with lock_held_elsewhere(bot.settings.data_dir / "write.lock") as holder:
        *_, said = handlers.on_upload([str(note)])
    assert f"is busy: process {holder.pid}" in said
    assert list(handlers.uploads.glob("*")) == []  # the folder is made for the upload; the copy is gone


def test_the_browser_record_is_never_written_without_its_owner_token():
    from ragbot.interfaces.app import remembered

    token = "0123456789abcdef0123456789abcdef"
    assert remembered({"owner": token, "k": 5}, conversation="c") == {"owner": token, "k": 5, "conversation": "c"}
    assert remembered({}, k=3) is None and remembered(None, k=3) is None  # the page has not read it yet
    assert remembered({"owner": "../../x"}, k=3) is None


def test_settings_name_what_makes_the_answers(corpus_bot):
    """Quoted answers come from the embedder's ranking: naming the generator there would mislead."""
    quoting = ChatHandlers(corpus_bot).model_info()
    assert corpus_bot.settings.embedder in quoting and "quote" in quoting
    assert corpus_bot.settings.generator not in quoting
    writing = ChatHandlers(corpus_bot.with_settings(answer_mode="generate")).model_info()
    assert corpus_bot.settings.generator in writing and "adapter" in writing


def test_settings_name_the_adapter_whose_calibration_declines_questions(corpus_bot, monkeypatch):
    """In extract mode no adapter writes, but an active adapter's calibrated threshold still
    decides which questions are declined: the settings say whose it is."""
    from ragbot.answer.answerability import AnswerabilityCheck

    bot = corpus_bot.with_settings()
    plain = ChatHandlers(bot).model_info()
    assert "evidence_threshold" in plain and f"{bot.settings.evidence_threshold:.2f}" in plain
    check = AnswerabilityCheck(scorer="embedding", threshold=0.4321, fit_report={"n": 40})
    monkeypatch.setattr(bot, "answering_adapter", lambda: "v7")
    monkeypatch.setattr(bot, "_adapter_metadata", lambda version="": {"answerability": check.to_dict()})
    assert bot.answerability_check() == check
    tuned = ChatHandlers(bot).model_info()
    assert "adapter **v7**" in tuned and "0.43" in tuned and "evidence_threshold" not in tuned


def test_no_two_load_events_set_the_same_component(make_bot):
    """Whatever a page load sets (session state included) is set by one event only: two would
    race. A `gr.State` with a callable default gets a load event of Gradio's own, which raced
    on_load's setting of the open conversation: when Gradio's finished last, the page went on in
    a new conversation while the old one was still shown (a reload, then a question: its answer
    in another conversation)."""
    from collections import Counter

    import gradio as gr

    from ragbot.interfaces.app import build_app

    app = build_app(make_bot(default_corpus=None))
    on_load = [fn for fn in app.fns.values() if any(event == "load" for _, event in fn.targets)]
    setters = Counter(out._id for fn in on_load for out in fn.outputs)
    states = {block_id for block_id, block in app.blocks.items() if isinstance(block, gr.State)}
    assert states & set(setters) and max(setters.values()) == 1, setters


def test_the_sources_panel_says_which_answer_it_speaks_of(make_bot, docs):
    """After a reload, or with the chat scrolled to an older answer, nothing said which answer
    the panel showed (helper-49's drive): it names the question, as the user asked it."""
    bot = make_bot()
    bot.ingest([docs])
    handlers = ChatHandlers(bot)
    handlers.start_turn("c1", "browser:ann", "Where is the Eiffel Tower?")
    *_, (history, panel, _) = handlers.respond("Where is the Eiffel Tower?", [], "c1", 5, 0.0, False, session="s")
    assert panel.startswith("<p class='ragbot-for'>For the answer to “Where is the Eiffel Tower?”</p>"), panel
    handlers.start_turn("c1", "browser:ann", "When was it <b>completed</b>?")
    *_, (history, panel, _) = handlers.respond("When was it <b>completed</b>?", history, "c1", 5, 0.0, False,
                                               session="s")
    assert "For the answer to “When was it &lt;b&gt;completed&lt;/b&gt;?”" in panel  # the turn's words, as text
    older = handlers.sources_of(history, 1, "s", False)  # the first answer, clicked
    assert older.startswith("<p class='ragbot-for'>For the answer to “Where is the Eiffel Tower?”</p>"), older


def test_a_setting_typed_out_of_range_is_brought_into_it(make_bot):
    """Typed into a slider's number box, 50 passages (up to 20) showed 20 but was sent as 50, and
    Gradio refused the next question with "Value 50 is greater than maximum value 20" (helper-58's
    drive). The server clamps it; something that is not a number is still refused."""
    import gradio as gr
    import pytest

    from ragbot.interfaces.app import build_app
    from ragbot.interfaces.handlers import MAX_K, MAX_TEMPERATURE

    app = build_app(make_bot(default_corpus=None))
    sliders = {block.elem_id: block for block in app.blocks.values() if isinstance(block, gr.Slider)}
    k, temperature = sliders["passages-to-retrieve"], sliders["temperature"]
    assert k.preprocess(50) == MAX_K and k.preprocess(0) == 1 and k.preprocess(7) == 7
    assert k.preprocess(7.4) == 7 and k.preprocess(float("inf")) == MAX_K  # on its steps, in its range
    assert temperature.preprocess(9.5) == MAX_TEMPERATURE and temperature.preprocess(-1) == 0.0
    assert temperature.preprocess(0.333) == 0.35
    for not_a_number in (float("nan"), None, "50", True):  # an emptied box sends None
        with pytest.raises(gr.Error, match="Passages to retrieve must be a number"):
            k.preprocess(not_a_number)
