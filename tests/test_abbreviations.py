"""The abbreviations a user's documents write, learned from their text (ingest/abbreviations.py),
and used when an answer quotes a sentence."""

from nltk.tokenize.punkt import PunktTrainer

from conftest import CORPUS
from ragbot.ingest.abbreviations import learn
from ragbot.text import LINE_BREAK, sentences


def test_punkt_learns_the_abbreviations_a_text_writes_in_any_language():
    # A text as documents are written: the words that end its sentences also stand inside others.
    english = ("Dr. Ellen Marsh bred the first Zorblat in Oslo. The pets sleep by day and eat crickets. "
               "Later Dr. Jones sold crickets at a shop on Main St. near the park, one day a week. "
               "Dr. Marsh still lives on Elm St. in Oslo, where one shop sells pets. A Zorblat lives ten years. "
               "The park is open every day. Years later the shop in Oslo closed. Every pet needs one cage. ")
    learned = learn([english])
    assert "dr" in learned and "st" in learned
    assert not {"crickets", "day", "oslo", "years", "one", "cage"} & set(learned)
    german = ("Die Firma hat ca. 40 Mitarbeiter und sitzt in Bonn. Der Bau kostet ca. 3 Mio. Euro. Das Haus "
              "ist alt, aber schön. Im Jahr 2020 kamen ca. 12 neue Kunden nach Bonn. Der Umsatz lag bei 5 Mio. "
              "Euro. Die alte Stadt ist schön. Schön ist das Haus in Bonn nicht, es ist alt. Kunden zahlen in Euro. ")
    learned = learn([german])
    assert {"ca", "mio"} <= set(learned)
    assert not {"bonn", "alt", "schön", "euro", "kunden", "nicht"} & set(learned)
    # A word that ends many sentences but also stands inside one is a word, though Punkt's
    # likelihood alone takes it ("idea", as from the shipped corpus).
    subjects = ["cats", "dogs", "rain", "maps", "ships", "trees", "songs", "books", "walls", "roads"]
    ideas = " ".join(f"The {w} were a new idea. Then {w} came." for w in subjects * 4)
    ideas += " The idea is old. Dr. Marsh had it."
    trainer = PunktTrainer()
    trainer.train(ideas, finalize=True)
    assert "idea" in trainer.get_params().abbrev_types
    assert "dr" in learn([ideas]) and "idea" not in learn([ideas])
    # Single letters are left to the splitter's own initials rule; no text, nothing learned.
    assert all(len(w.replace(".", "")) > 1 for w in learn([english, german]))
    assert learn([]) == []


def test_a_word_that_ends_a_paragraph_or_a_list_item_is_not_taken_for_an_abbreviation():
    """The shipped corpus writes "off." twice and "off" nowhere else: "…can be stored separately
    and switched on or off. QLoRA combines…" and a list item "- Wrong facts: … completely off.".
    Punkt takes it for an abbreviation, which joined the LoRA sentence to the QLoRA one. A word
    that the text writes with its stop at the end of a paragraph, of a list item or of a chunk
    ends sentences, whatever the language."""
    texts = [path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.md"))]
    trainer = PunktTrainer()
    trainer.train("\n\n".join(texts), finalize=True)
    assert "off" in trainer.get_params().abbrev_types
    learned = learn(texts)
    assert "off" not in learned
    assert sentences("It can be stored separately and switched on or off. QLoRA combines LoRA with a base model.",
                     frozenset(learned)) == ["It can be stored separately and switched on or off.",
                                             "QLoRA combines LoRA with a base model."]
    # The same list as a PDF gives it, without its marks, each item set apart by its spacing
    # (text.LINE_BREAK): its items end sentences too.
    as_pdf = [text.replace("\n- ", "\n" + LINE_BREAK) for text in texts]
    assert "completely off.\n" + LINE_BREAK + "Fabricated" in "".join(as_pdf)
    assert "off" not in learn(as_pdf)
    assert "off" not in learn([text.replace("\n- ", "\n• ") for text in texts])  # or with their bullets
    # A word written with its stop inside paragraphs only stays learned, wherever the text wraps.
    doc = ("The pet was first bred by Dr. Ellen Marsh in Oslo.\nLater Dr. Jones sold crickets at a shop on Main St.\n"
           "near the park. Dr. Marsh still lives on Elm St. in Oslo.\n\n- A pet needs one cage.\n- Pets eat crickets.\n")
    assert {"dr", "st"} <= set(learn([doc]))
    # A chunk may end at any ". " of a long paragraph, so its end is no block's end; a line that
    # starts with a figure ("#3", "-20 °C") opens no list item or heading.
    assert {"dr", "st"} <= set(learn([doc, "The cage was later cleaned by Dr.", "Main St.\n#3 of the shops sells pets."]))


def test_a_large_library_is_sampled_not_read_whole(make_bot, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("\n\n".join(f"Dr. Marsh wrote note number {i} about the pets and their cages." for i in range(400)))
    bot = make_bot(chunk_tokens=64, chunk_overlap=0)
    assert bot.ingest([doc]).ok
    everything = sum(len(c.text) for c in bot.store.all_chunks())
    sample = bot._chunk_text_sample(max_chars=2_000)
    assert 2_000 <= sum(map(len, sample)) < everything / 2
    assert len(set(sample)) == len(sample)  # each chunk once


def test_an_answer_quotes_the_whole_sentence_after_an_abbreviation(make_bot, tmp_path):
    """Learned by the ingest and kept with the chunks' signature; a removal learns them again."""
    doc = tmp_path / "pets.md"
    doc.write_text("# Pets\n\nThe Zorblat is a small nocturnal pet first bred by Dr. Ellen Marsh in 1987 in Oslo.\n\n"
                   "A Zorblat needs a warm cage kept at 28 degrees.\n")
    bot = make_bot()
    assert bot.ingest([doc]).ok
    assert "dr" in bot.abbreviations()
    stored = bot.store.meta("abbreviations")
    assert stored and '"dr"' in stored and f'"chunks": "{bot.store.chunk_signature()}"' in stored
    answer = bot.ask("Who first bred the Zorblat?", record=False)
    assert "Dr. Ellen Marsh in 1987 in Oslo [1]." in answer.answer, answer.answer
    # Another process (or an older ragbot) wrote the generation: learned here, in memory.
    bot.store.set_meta("abbreviations", "{}")
    bot._abbreviations = None
    assert "dr" in bot.abbreviations()
    assert bot.remove([doc]).ok
    assert bot.abbreviations() == frozenset()


def test_the_abbreviations_outlive_a_generation_that_changed_no_chunk(make_bot, tmp_path, monkeypatch):
    """A switch of the ranking embedder (or a repair) moves the generation on without changing a
    chunk: the words kept are read, not learned again by every process (helper-59's review). A
    damaged record is learned again, not fatal; a failure to learn splits as before, with a warning."""
    import pytest

    import ragbot.bot as bot_module

    doc = tmp_path / "pets.md"
    doc.write_text("# Pets\n\nThe Zorblat was first bred by Dr. Ellen Marsh in 1987 in Oslo. It eats crickets.\n")
    bot = make_bot()
    assert bot.ingest([doc]).ok

    def failing(texts, *args, **kwargs):
        raise AssertionError("learned again")

    monkeypatch.setattr(bot_module, "learn_abbreviations", failing)
    bot.store._bump_generation()
    bot._abbreviations = None  # another process
    assert "dr" in bot.abbreviations()  # read from the record: `failing` was not called
    for damaged in ("not json", "[]", '{"chunks": 3}'):
        bot.store.set_meta("abbreviations", damaged)
        bot._abbreviations = None
        with pytest.warns(UserWarning, match="abbreviations were not learned"):
            assert bot.abbreviations() == frozenset()  # learned again (here: failing), split as before
        answer = bot.ask("Who first bred the Zorblat?", record=False)
        assert not answer.refused
    monkeypatch.undo()
    bot._abbreviations = None
    assert "dr" in bot.abbreviations()  # learned again from the chunks


def test_a_generated_reply_is_split_with_the_abbreviations_too():
    """The generate mode shows a reply a sentence at a time and checks each one's citation: "Dr."
    cut it as it cut quotes (helper-59's review)."""
    from ragbot.answer.generation import check_citations, settled_sentences

    reply = "The Zorblat was first bred by Dr. Ellen Marsh in 1987 [1]. It eats crickets [1]."
    pieces = [reply[i:i + 7] for i in range(0, len(reply), 7)]  # as a model streams it
    assert list(settled_sentences(iter(pieces), [], abbreviations=frozenset({"dr"}))) == [
        "The Zorblat was first bred by Dr. Ellen Marsh in 1987 [1].", "It eats crickets [1]."]
    assert list(settled_sentences(iter(pieces), []))[0] == "The Zorblat was first bred by Dr."
    checked, _ = check_citations("Bred by Dr. Ellen Marsh.", 1, lambda sentences: [[0.9] for _ in sentences],
                                 frozenset({"dr"}))
    assert checked == "Bred by Dr. Ellen Marsh [1]."
