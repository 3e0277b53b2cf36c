"""Prompt building and reply reading. The token counter here is a stand-in (one token per
word): these functions take any counter, and the real tokenizer is exercised in test_ask.py."""

from dataclasses import replace

from ragbot.answer.generation import (
    RECITE_MARGIN,
    REFUSAL,
    SUPPORT_THRESHOLD,
    build_prompt,
    check_citations,
    cited_first,
    cited_numbers,
    is_refusal,
    renumber_citations,
    settled_sentences,
    strip_citation_marks,
    strip_invalid_citations,
)
from ragbot.text import sentences as split_sentences
from ragbot.types import Passage


def words(text: str) -> int:
    return len(text.split())


def render(messages) -> str:
    return "\n".join(f"<{m['role']}>\n{m['content']}" for m in messages)


def _passage(rank: int, n_words: int, page=None) -> Passage:
    text = " ".join(f"w{rank}_{i}" for i in range(n_words))
    return Passage(chunk_id=100 + rank, source=f"/docs/d{rank}.md", title=f"Doc {rank}", section="",
                   page=page, text=text, score=1 - rank / 10, rank=rank)


def test_prompt_numbers_passages_in_rank_order_and_fits_the_budget():
    passages = [_passage(r, 50) for r in range(1, 6)]
    prompt = build_prompt("What is it?", passages, render, words, budget=220)
    assert words(prompt.text) <= 220
    assert [p.rank for p in prompt.passages] == list(range(1, len(prompt.passages) + 1))
    assert 2 <= len(prompt.passages) < 5
    assert "[1] (Doc 1)" in prompt.text and "[2] (Doc 2)" in prompt.text
    assert prompt.text.rstrip().endswith("Question: What is it?")


def test_prompt_shows_page_numbers_and_truncates_the_last_passage_to_fit():
    passages = [_passage(1, 30, page=7), _passage(2, 400)]
    prompt = build_prompt("Q?", passages, render, words, budget=200)
    assert "(Doc 1, page 7)" in prompt.text
    assert len(prompt.passages) == 2 and prompt.text.count("…") == 1
    assert words(prompt.text) <= 200


def test_the_model_reads_a_pdfs_sentence_break_as_a_plain_line_break():
    form = replace(_passage(1, 5), text="Flight Conducted Under: Part 91\n\u2028On December 23, it departed.")
    prompt = build_prompt("Q?", [form], render, words, budget=100)
    assert "Flight Conducted Under: Part 91\nOn December 23, it departed." in prompt.text
    assert "\u2028" not in prompt.text


def test_prompt_keeps_conversation_history_before_the_question():
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    prompt = build_prompt("Q?", [_passage(1, 5)], render, words, budget=100, history=history)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user"]


def test_citations_are_read_and_invalid_ones_removed():
    reply = "GANs date from 2014 [2]. They have two parts [1, 3]. See also [9]."
    assert cited_numbers(reply, n_passages=3) == [2, 1, 3]
    assert cited_numbers(reply, n_passages=2) == [2, 1]
    assert strip_invalid_citations(reply, 2) == "GANs date from 2014 [2]. They have two parts [1]. See also."
    assert cited_numbers(reply) == [2, 1, 3, 9]  # no limit


def test_marks_are_stripped_without_leaving_a_space_before_punctuation():
    """A mark a correction's text cannot keep goes: "engine [1]." reads "engine.", and a mark
    between words leaves them apart, with one space, not two."""
    said = strip_citation_marks("It had a Lycoming engine [1]. GANs[2]and VAEs [3, 4] differ [5]!")
    assert said == "It had a Lycoming engine. GANs and VAEs differ!"
    assert strip_citation_marks("Seats: 4 [2]\nEngine [3] Lycoming [4]") == "Seats: 4\nEngine Lycoming"
    # A run of marks, as replies and Wikipedia-style texts write them, goes as one: it left
    # "in 2014 ." and "A  b" before.
    assert strip_citation_marks("in 2014[1][2]. A [3][4] b, y [2] [3], z.[5][6] Next") == "in 2014. A b, y, z. Next"
    assert renumber_citations("GANs [4][2] and VAEs [3] [9].", {2: 1, 4: 2}) == "GANs [2, 1] and VAEs."


def test_a_corrections_marks_are_renumbered_and_unknown_ones_go():
    text = "Mixed by those weights [2]. Both [3, 2] say so [9]. GANs[7]and VAEs differ."
    assert renumber_citations(text, {2: 1, 3: 4}) == "Mixed by those weights [1]. Both [4, 1] say so. GANs and VAEs differ."
    assert renumber_citations("No marks here.", {1: 2}) == "No marks here."
    # Whatever else the user typed stays as typed.
    assert renumber_citations("Odd \x000\x00 text [1].", {1: 2}) == "Odd \x000\x00 text [2]."


def test_cited_passages_are_numbered_first():
    """The fourth passage quoted reads [1]; the others keep their order after the cited ones, and
    each mark still names the passage it named."""
    passages = [replace(_passage(r, 3), search_rank=r) for r in range(1, 6)]
    text, shown = cited_first("Quoted from the fourth [4]. And the second [2, 4].", passages)
    assert text == "Quoted from the fourth [1]. And the second [2, 1]."
    assert [p.chunk_id for p in shown] == [104, 102, 101, 103, 105] and [p.rank for p in shown] == [1, 2, 3, 4, 5]
    assert [p.search_rank for p in shown] == [4, 2, 1, 3, 5]  # where the search put each is kept
    assert [p.rank for p in passages] == [1, 2, 3, 4, 5]  # the passages given are not changed
    assert cited_first("Nothing cited.", passages) == ("Nothing cited.", passages)


def test_only_the_refusal_itself_is_a_refusal():
    """Whether to answer is decided before any text is made; no reply is read for refusal words."""
    assert is_refusal(REFUSAL)
    assert is_refusal(f"  {REFUSAL}\n")
    assert not is_refusal("")
    assert not is_refusal(None)
    assert not is_refusal("The model size was not specified by OpenAI [1].")  # an answer, not a refusal


def test_missing_citations_are_added_only_where_a_passage_supports_the_sentence():
    reply = "First fact [2]. Second fact.\n- a list item\nUnrelated claim."
    assert split_sentences(reply) == ["First fact [2].", "Second fact.", "- a list item", "Unrelated claim."]
    table = {"First fact [2].": [0.1, 0.9], "Second fact.": [0.9, 0.1], "- a list item": [0.2, SUPPORT_THRESHOLD + 0.01],
             "Unrelated claim.": [0.1, 0.2]}
    cited, supported = check_citations(reply, 2, lambda sents: [table[s] for s in sents])
    assert cited == "First fact [2]. Second fact [1].\n- a list item [2]\nUnrelated claim."
    assert supported


def test_an_answer_no_passage_supports_is_flagged():
    cited, supported = check_citations("Paris is in France.", 3, lambda sents: [[0.1, 0.2, 0.0]])
    assert cited == "Paris is in France." and not supported


def test_a_citation_is_repointed_only_to_a_clearly_better_passage():
    reply = "GANs date from 2014 [2]. They have two parts [3]. Both ideas [1, 2] matter."
    table = {
        "GANs date from 2014 [2].": [0.80, 0.30, 0.10],  # [1] is clearly closer: re-pointed
        "They have two parts [3].": [0.50, 0.10, 0.50 - RECITE_MARGIN / 2],  # not by the margin: kept
        "Both ideas [1, 2] matter.": [0.20, 0.10, SUPPORT_THRESHOLD - 0.01],  # best too weak: kept
    }
    fixed, supported = check_citations(reply, 3, lambda sents: [table[s] for s in sents])
    assert fixed == "GANs date from 2014 [1]. They have two parts [3]. Both ideas [1, 2] matter."
    assert supported


def _pieces(text: str, size: int = 3):
    return (text[i:i + size] for i in range(0, len(text), size))


def test_settled_sentences_leave_out_copied_markup_and_a_cut_ending():
    shown = [_passage(1, 3), Passage(chunk_id=7, source="/d/vae.md", title="Variational Autoencoders", section="",
                                     page=None, text="t", score=0.5, rank=2)]
    reply = "# VAEs\nA VAE has an encoder [2]. [2] (Variational Autoencoders) It was trained with a KL-d"
    assert list(settled_sentences(_pieces(reply), shown)) == ["A VAE has an encoder [2]."]
    # A header copied in part (cut before its line ends), or for a passage that was never shown.
    partial = "[2] (Variational Auto\nIt uses a decoder [1]. [3] (Made up) It has two parts [1]."
    assert list(settled_sentences(_pieces(partial), shown)) == ["It uses a decoder [1].", "It has two parts [1]."]
    # A citation followed by the model's own parenthesis is text, not markup.
    assert list(settled_sentences(_pieces("GANs came in 2014 [1] (Goodfellow et al.)."), shown)) == [
        "GANs came in 2014 [1] (Goodfellow et al.)."]
    # A reply that is one unfinished sentence says it was cut.
    assert list(settled_sentences(_pieces("It was trained with a KL-d"), shown)) == ["It was trained with a KL-d …"]
    # Unless generation ended by itself: then the last words stand as written.
    assert list(settled_sentences(_pieces("Yes [1]. Two parts [2]"), shown, was_cut=lambda: False)) == [
        "Yes [1].", "Two parts [2]"]
    # A finished reply comes out whole, a sentence at a time, as soon as each is settled.
    done = "Kingma and Welling introduced it in 2013 [2]. It has an encoder and a decoder!"
    assert list(settled_sentences(_pieces(done), shown)) == [
        "Kingma and Welling introduced it in 2013 [2].", "It has an encoder and a decoder!"]


def test_a_citation_after_the_full_stop_stays_with_its_sentence_while_streaming():
    """Streamed one character at a time, "Fact. [2" must not settle "Fact." without its [2]."""
    shown = [_passage(1, 3), _passage(2, 3)]
    assert list(settled_sentences(_pieces("Fact one. [2] Fact two [1].", 1), shown)) == [
        "Fact one. [2]", "Fact two [1]."]


def test_a_streamed_reply_loses_no_sentence_where_the_next_word_decides_the_end():
    """Whether "It ends." ends a sentence depends on the word after it (a small letter after
    a capital-started sentence continues it): streamed one character at a time, an opening
    quote or bracket alone must not settle "It ends." and then have it merge with what follows.
    What is yielded is what the whole reply splits into."""
    shown = [_passage(1, 3)]
    for reply in ('It ends. "the cat" sat. Next one. Last.', "It ends. (see above) now. Next one.",
                  'Lewis et al. introduced it. "Then" came. The U.S. Army left.'):
        assert list(settled_sentences(_pieces(reply, 1), shown, was_cut=lambda: False)) == split_sentences(reply), reply
