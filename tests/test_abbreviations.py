"""The abbreviations a user's documents write, learned from their text (ingest/abbreviations.py),
and used when an answer quotes a sentence."""

from nltk.tokenize.punkt import PunktTrainer

from ragbot.ingest.abbreviations import learn


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


def test_a_sample_of_a_large_library_is_read():
    texts = [f"Dr. Marsh wrote note {i}. It was short." for i in range(2000)]
    assert "dr" in learn(texts, max_chars=5_000)


def test_an_answer_quotes_the_whole_sentence_after_an_abbreviation(make_bot, tmp_path):
    """Learned by the ingest and kept with its generation; a removal learns them again."""
    doc = tmp_path / "pets.md"
    doc.write_text("# Pets\n\nThe Zorblat is a small nocturnal pet first bred by Dr. Ellen Marsh in 1987 in Oslo.\n\n"
                   "A Zorblat needs a warm cage kept at 28 degrees.\n")
    bot = make_bot()
    assert bot.ingest([doc]).ok
    assert "dr" in bot.abbreviations()
    stored = bot.store.meta("abbreviations")
    assert stored and '"dr"' in stored and f'"generation": {bot.store.generation()}' in stored
    answer = bot.ask("Who first bred the Zorblat?", record=False)
    assert "Dr. Ellen Marsh in 1987 in Oslo [1]." in answer.answer, answer.answer
    # Another process (or an older ragbot) wrote the generation: learned here, in memory.
    bot.store.set_meta("abbreviations", "{}")
    bot._abbreviations = None
    assert "dr" in bot.abbreviations()
    assert bot.remove([doc]).ok
    assert bot.abbreviations() == frozenset()
