"""The one sentence splitter and markup stripper (answers, training data and the citation check
all use it). It reads punctuation and layout only: any script's sentence stops, not its words."""

from ragbot.text import (LINE_BREAK, counted, join_sentences, plain, prose_sentences, sentence_body,
                         sentence_spans, sentences, word_count)


def test_sentences_end_at_marks_and_keep_their_citations():
    text = "GANs date from 2014 [2]. They have two parts [1, 3]! Do they? Yes."
    assert sentences(text) == ["GANs date from 2014 [2].", "They have two parts [1, 3]!", "Do they?", "Yes."]


def test_a_decimal_point_or_a_version_ends_no_sentence():
    assert sentences("SmolLM2 has 1.7 billion parameters. It is small.") == [
        "SmolLM2 has 1.7 billion parameters.", "It is small."]
    assert sentences("Version 2.0.1 shipped.") == ["Version 2.0.1 shipped."]


def test_an_initial_or_a_small_letter_after_the_stop_ends_no_sentence():
    assert sentences("The U.S. Department of Homeland Security wrote it. Others read it.") == [
        "The U.S. Department of Homeland Security wrote it.", "Others read it."]
    assert sentences("The owner was John A. Kiley of Texas [1]. He flew.") == [
        "The owner was John A. Kiley of Texas [1].", "He flew."]
    assert sentences("Lewis et al. introduced RAG. Models, e.g. GPT-4, use it.") == [
        "Lewis et al. introduced RAG.", "Models, e.g. GPT-4, use it."]
    assert sentences("Viele Modelle, z. B. GPT-3, sind groß. M. Dupont a voté.") == [
        "Viele Modelle, z. B. GPT-3, sind groß.", "M. Dupont a voté."]
    # A stop after a word, a number or a citation before a capital or a digit still ends one,
    # in any script; so does one before a word in a script without capitals.
    assert sentences("It is written in. Retrieval helps. GANs date from 2014 [2]. 3 models exist.") == [
        "It is written in.", "Retrieval helps.", "GANs date from 2014 [2].", "3 models exist."]
    assert sentences("Это модель. Она мала. 这是模型. 它很小.") == ["Это модель.", "Она мала.", "这是模型.", "它很小."]
    # Georgian's letters all read as small, and its sentences start with them: split as before.
    assert sentences("ეს მოდელია. ის პატარაა.") == ["ეს მოდელია.", "ის პატარაა."]
    # A bullet after the stop still ends one; what these rules join by design: a sentence that
    # ends in a one-letter word.
    assert sentences("Setup is easy. • Install it. We chose plan B. Then it failed.") == [
        "Setup is easy.", "• Install it.", "We chose plan B. Then it failed."]
    # The day of a date written day first ends no sentence; an ordinal before a noun still does.
    assert sentences("Es gilt seit dem 1. Mai 2023 und kostet 49 Euro. Der 2. Weltkrieg endete 1945.") == [
        "Es gilt seit dem 1. Mai 2023 und kostet 49 Euro.", "Der 2.", "Weltkrieg endete 1945."]
    assert sentences("The answer is 42. Nobody knows. GANs came in 2014. Then 2015 came.") == [
        "The answer is 42.", "Nobody knows.", "GANs came in 2014.", "Then 2015 came."]
    # A letter ending a longer token is no initial: a unit or a name with a hyphen ends a sentence.
    assert sentences("Er fährt bis zu 300 km/h. Schon 1988 fuhr einer schneller. Es ist Typ-B. Dann (A. Smith) kam.") == [
        "Er fährt bis zu 300 km/h.", "Schon 1988 fuhr einer schneller.", "Es ist Typ-B.", "Dann (A. Smith) kam."]


def test_a_list_number_written_inline_begins_its_item():
    # As pypdf gives a numbered list inside a paragraph (the GSA plan): before, the quote for
    # "What are GSA's four fundamental strategies?" was "…in the coming years: 1" [1].
    text = ("GSA has four fundamental strategies for the coming years: 1. Develop real estate solutions. "
            "2. Offer best value. 3. Modernize technology.")
    assert sentences(text) == [
        "GSA has four fundamental strategies for the coming years: 1. Develop real estate solutions.",
        "2. Offer best value.", "3. Modernize technology."]
    assert sentences("1. Install it. 2. Run it.") == ["1. Install it.", "2. Run it."]
    assert prose_sentences("Four strategies for the coming years: 1.\nDevelop real estate\nsolutions. 2. Offer best\nvalue.") == [
        "Four strategies for the coming years: 1. Develop real estate solutions.", "2. Offer best value."]
    assert sentences("It grew. [1] 2. Offer value.") == ["It grew. [1]", "2. Offer value."]
    assert sentences("          1. Develop it. Then done.") == ["1. Develop it.", "Then done."]
    # A number after a word, or a form's value after its label, still ends its sentence.
    assert sentences("The total was 12. Then it fell.") == ["The total was 12.", "Then it fell."]
    assert sentences("Age: 45. Sex: Male. Seats: 4. Engines: 1. Then it flew.") == [
        "Age: 45.", "Sex: Male.", "Seats: 4.", "Engines: 1. Then it flew."]


def test_a_closing_quote_or_bracket_stays_with_its_sentence():
    assert sentences('It is called "RAG." It works. (See above.) Next [2]. He said \u201cstop.\u201d Then left.') == [
        'It is called "RAG."', "It works.", "(See above.)", "Next [2].", "He said \u201cstop.\u201d", "Then left."]


def test_a_line_break_ends_a_sentence_and_spans_point_into_the_text():
    text = "First fact [2]. Second fact.\n- a list item\n\nLast."
    assert sentences(text) == ["First fact [2].", "Second fact.", "- a list item", "Last."]
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences(text)


def test_other_languages_split_the_same_way():
    assert sentences("Das Modell wurde 2017 vorgestellt. Es nutzt Aufmerksamkeit.") == [
        "Das Modell wurde 2017 vorgestellt.", "Es nutzt Aufmerksamkeit."]
    assert sentences("Le modèle apprend. Élève et maître.") == ["Le modèle apprend.", "Élève et maître."]


def test_every_scripts_sentence_stops_end_sentences():
    """Only . ! ? ended a sentence, so a Japanese memo was one sentence and quoted whole
    (helper-87's drive). Unicode's Sentence_Terminal characters end them now; after a full-width
    one (。！？) no space need follow."""
    assert sentences("東京本社で会議が開かれました。新製品の名前は「ひかり」です。売上は増えました！本当？はい。") == [
        "東京本社で会議が開かれました。", "新製品の名前は「ひかり」です。", "売上は増えました！", "本当？", "はい。"]
    assert sentences("这是模型。它很小 [1]。第三句。") == ["这是模型。", "它很小 [1]。", "第三句。"]
    assert sentences("यह पहला वाक्य है। यह दूसरा है।") == ["यह पहला वाक्य है।", "यह दूसरा है।"]
    assert sentences("هل هذا سؤال؟ نعم هذا جواب.") == ["هل هذا سؤال؟", "نعم هذا جواب."]
    assert sentences("本当？！そうです。") == ["本当？！", "そうです。"]  # a run of stops ends one sentence
    # a quote's closing mark goes on to its verb; a full-width full stop between digits is a decimal (helper-88)
    assert sentences("「はい。」と言った。「本当？」「うん。」") == ["「はい。」と言った。", "「本当？」", "「うん。」"]
    assert sentences("売上は１．５倍になった。次の文。") == ["売上は１．５倍になった。", "次の文。"]


def test_words_are_counted_in_scripts_written_without_spaces():
    assert word_count("東京本社で会議が開かれました。") == 14  # each kanji and kana a word (UAX #29)
    assert word_count("はい。") == 2 and word_count("Yes.") == 1
    assert word_count("state-of-the-art models, 2024") == 3  # between spaces, as before


def test_sentences_are_joined_as_their_script_writes_them():
    assert join_sentences(["一つ目 [1]。", "二つ目 [2]。", "Third [1].", "Fourth."]) == "一つ目 [1]。二つ目 [2]。Third [1]. Fourth."
    assert sentence_body("…ました。") == "…ました" and sentence_body("Really?!") == "Really"


def test_prose_sentences_drop_headings_list_marks_and_markup():
    chunk = ("# Retrieval\n\nRetrieval-augmented generation connects a model to documents. It was "
             "described in 2020.\n\n## Why\n\n- **Fresh knowledge**: documents can be updated.\n"
             "1. `Embed` the chunks.")
    assert prose_sentences(chunk) == [
        "Retrieval-augmented generation connects a model to documents.", "It was described in 2020.",
        "Fresh knowledge: documents can be updated.", "Embed the chunks."]
    assert plain("**bold** and `code`  and __under__") == "bold and code and under"


def test_a_pdfs_line_break_ends_a_sentence_and_a_bullet_glyph_is_not_quoted():
    """A PDF line set apart by its spacing begins with LINE_BREAK (ingest/pdf.py): the lines
    before and after it are sentences apart, though a wrapped line still reads on. A PDF's list
    item opens with a glyph ("• ", Word's Symbol bullet), which a quote leaves out; a bullet that
    opens no item ("2 • 3", "•no space") stays."""
    text = (f"Flight Conducted Under: Part 91\n{LINE_BREAK}On December 23, the airplane\ndeparted the coast.\n"
            f"Values:\n{LINE_BREAK}• Openness and trust\n{LINE_BREAK}\uf0b7 Service to all. • Staying open.")
    assert prose_sentences(text) == ["Flight Conducted Under: Part 91", "On December 23, the airplane departed the coast.",
                                     "Values:", "Openness and trust", "Service to all.", "Staying open."]
    assert prose_sentences("Without the break\nthe lines read on.") == ["Without the break the lines read on."]
    # A line that opens with a bullet glyph opens a list item, as "- " does in Markdown, whatever
    # the spacing: NARA's "Strategies:" no longer runs into its first item.
    assert prose_sentences("Strategies:\n• NARA will keep records\nsafe.\n▪ It will open them") == [
        "Strategies:", "NARA will keep records safe.", "It will open them"]
    # A title that opens an item stays with the name after it, whichever glyph opens it
    # (helper-80); "◦" opens none: LaTeX's PDFs give it for a degree sign ("25\n◦ C").
    assert prose_sentences("Staff:\n▪ Prof. Anton Várady, who mapped the caves.\n\uf0b7 Sgt. Mira led.") == [
        "Staff:", "Prof. Anton Várady, who mapped the caves.", "Sgt. Mira led."]
    assert prose_sentences("It was heated to 25\n◦ C and then cooled.") == ["It was heated to 25 ◦ C and then cooled."]
    assert prose_sentences("2 • 3 is six. •no space") == ["2 • 3 is six.", "•no space"]


def test_a_markdown_link_or_image_reads_as_its_text():
    """A quote shows what a reader of the page sees, never a link's target (the chat showed
    "[the login page](javascript:alert(2))" as written)."""
    assert prose_sentences("Sign in on [the login page](javascript:alert(2)). See ![the chart](c.png \"Chart\") "
                           "and [Foo](https://en.wikipedia.org/wiki/Foo_(bar)).") == [
        "Sign in on the login page.", "See the chart and Foo."]
    # Brackets that make no link stay as written: a citation, a list, text before a space.
    assert plain("As [1] said, [x] (y) and [a, b] stay.") == "As [1] said, [x] (y) and [a, b] stay."


def test_each_table_row_is_a_sentence_of_its_own():
    """Rows of a table (cells separated by " | ", as the HTML and PDF readers write them) are not
    run together into one sentence with the rows around them; prose around them is split as
    before. A form's row pairing several labels with their values gives each pair as a sentence
    of its own (each is a fact an answer may quote alone)."""
    chunk = ("The form reads:\n| Location: | Quincy, FL | Registration: | N5921D |\n"
             "Aircraft: | Piper PA-22-150 |\n| --- | --- |\nThe pilot was not hurt. He typed ls | grep x\nand walked away.")
    # A row's cells read as a line, each label followed by its value; a bar in prose stays.
    assert prose_sentences(chunk) == ["The form reads:", "Location: Quincy, FL", "Registration: N5921D",
                                      "Aircraft: Piper PA-22-150", "The pilot was not hurt.",
                                      "He typed ls | grep x and walked away."]
    assert prose_sentences("| Name | Year |\n| GPT-2 | 2019 |") == ["Name; Year", "GPT-2; 2019"]
    # One pair and other cells: one sentence.
    assert prose_sentences("| Name: | Ambur | Signed |") == ["Name: Ambur; Signed"]
    # A label whose value is empty says nothing: it is left out, and was quoted as an answer
    # ("Aircraft Make: Cessna; Registration:"; "Airworthiness Certificate:; Serial Number:").
    assert prose_sentences("| Wind: | Calm | Gusts: | | Visibility: | 10 Miles |") == [
        "Wind: Calm", "Visibility: 10 Miles"]
    assert prose_sentences("| Aircraft Make: | Cessna | Registration: | |") == ["Aircraft Make: Cessna"]
    assert prose_sentences("The form:\n| Airworthiness Certificate: | | Serial Number: | |\nEnd.") == [
        "The form:", "End."]
    # As the PDF reader writes a form's rows: an empty field's label has no cell after it.
    assert prose_sentences("| Departure Time: | 1710 EST | Type of Airspace: |") == ["Departure Time: 1710 EST"]
    assert prose_sentences("| Occupational Pilot: | Last Flight Review or Equivalent: | 10/01/2006 |") == [
        "Last Flight Review or Equivalent: 10/01/2006"]
    assert prose_sentences("| Airworthiness Certificate: | Serial Number: |") == []
    # Outside a form's row, a cell ending in a colon is text (helper-56).
    assert prose_sentences("| Step 1 | Mix the following: |") == ["Step 1; Mix the following:"]


def test_a_rows_cells_read_as_labels_and_values():
    from ragbot.text import cells_as_prose

    assert cells_as_prose("| Departure Point: | Quincy, FL (2J9) | Flight Plan: | None |") == (
        "Departure Point: Quincy, FL (2J9); Flight Plan: None")
    assert cells_as_prose("| Name: | | Year: | 2019 |") == "Name:; Year: 2019"  # an empty value cell
    assert cells_as_prose("| Key: | Value: |") == "Key:; Value:"  # a label is not another label's value
    # An empty value cell keeps the label from taking the next cell as its value.
    assert cells_as_prose("| Name: | | Note | x |") == "Name:; Note; x"
    assert cells_as_prose("Aircraft: | Piper PA-22-150 |") == "Aircraft: Piper PA-22-150"  # no bar before
    assert cells_as_prose("| a \\| b | c |") == "a | b; c"  # Markdown's escaped bar is text
    assert cells_as_prose("| GPT-2 | 2019 |") == "GPT-2; 2019"


def test_a_table_row_reads_back_as_its_cells():
    from ragbot.text import table_cells, table_row

    cells = ["Model: Llama | 2", "", "Meta"]
    assert table_row(cells) == "| Model: Llama \\| 2 |  | Meta |"
    assert table_cells(table_row(cells)) == cells  # the empty cell keeps its place
    assert table_cells("GPT-3 | 175B") == ["GPT-3", "175B"]  # a Markdown row without outer bars


def test_a_reply_holding_the_reference_scores_whole_however_long():
    from ragbot.evaluation.metrics import reference_recall, rouge_l

    reply = "Accelerator: NVIDIA H200; Memory: 141 GB HBM3e; Memory bandwidth: 4.8 TB/s; Released: 2024"
    assert reference_recall(reply, "141 GB HBM3e.") == 1.0 and rouge_l(reply, "141 GB HBM3e.") < 0.5
    assert reference_recall("It has 80 GB.", "141 GB HBM3e.") == 1 / 3
    assert reference_recall("GB", "GB GB") == 0.5  # each word as often as the reference has it



def test_a_passage_line_reads_without_its_markup():
    from ragbot.text import heading_title, readable_line

    assert heading_title("## 4.2 Costs ##") == "4.2 Costs" and heading_title("#hashtag") is None
    assert readable_line("| Departure Point: | Quincy, FL | Seats: | 3 |") == "Departure Point: Quincy, FL; Seats: 3"
    assert readable_line("| --- | --- |") == "" and readable_line("plain text") == "plain text"


def test_counted_says_one_thing_and_several_things():
    # "1 chunks" and "1 pages" in the library and in `ragbot documents`.
    assert [counted(n, "page") for n in (0, 1, 2)] == ["0 pages", "1 page", "2 pages"]


def test_a_word_the_documents_abbreviate_ends_no_sentence():
    # "Dr. Ellen Marsh" was cut at "Dr." (helper-58's drive): the quote lost the name asked for.
    text = "It was first bred by Dr. Ellen Marsh in 1987. It eats crickets. (Prof. Li) came. Mehr s. Nr. 6."
    assert sentences(text) == ["It was first bred by Dr.", "Ellen Marsh in 1987.", "It eats crickets.",
                               "(Prof.", "Li) came.", "Mehr s. Nr.", "6."]
    taught = frozenset({"dr", "prof", "nr"})
    assert sentences(text, taught) == ["It was first bred by Dr. Ellen Marsh in 1987.", "It eats crickets.",
                                       "(Prof. Li) came.", "Mehr s. Nr. 6."]
    # Only the whole word before the stop counts: "trade-off" is not "off", and "Drs" is not "dr".
    assert sentences("It is a trade-off. Then Drs. Smith came.", frozenset({"off", "dr"})) == [
        "It is a trade-off.", "Then Drs.", "Smith came."]
    assert prose_sentences("- First bred by Dr. Marsh.\n- It eats.", taught) == ["First bred by Dr. Marsh.", "It eats."]


def test_a_title_that_opens_a_line_stays_with_the_name_after_it():
    """helper-60's list "- Prof. Anton Várady, who mapped the local caves in 1921" was quoted as
    "Anton Várady, …": one "Prof." teaches Punkt nothing, and the splitter ended a sentence there.
    A sentence of one capitalised word before a capital is no sentence; a word ending a sentence
    of several, a small letter or a digit after it, and scripts without capitals split as before."""
    assert sentences("- Prof. Anton Várady, who mapped the local caves in 1921") == [
        "- Prof. Anton Várady, who mapped the local caves in 1921"]
    assert sentences("Sgt. Mira Okonkwo leads the fire brigade. Prof. Várady mapped the caves.") == [
        "Sgt. Mira Okonkwo leads the fire brigade.", "Prof. Várady mapped the caves."]
    assert sentences("Models such as Llama and Claude. SmolLM2 is small.") == [
        "Models such as Llama and Claude.", "SmolLM2 is small."]
    assert sentences("Done. 1987 was the year. ok. Next one.") == ["Done.", "1987 was the year.", "ok.", "Next one."]
    assert sentences("这是模型. 它很小.") == ["这是模型.", "它很小."]


def test_passages_are_shown_without_the_sentence_break_marks():
    """LINE_BREAK is for the sentence splitting only: `search --json` and `ask --json` showed it
    as "\\u2028" (helper-83's drive)."""
    from ragbot.text import LINE_BREAK
    from ragbot.types import Answer, Passage

    passage = Passage(chunk_id=1, source="r.pdf", title="R", section="", page=1,
                      text=f"Flight Conducted Under: Part 91\n{LINE_BREAK}The pilot said.", score=0.5, rank=1)
    shown = "Flight Conducted Under: Part 91\nThe pilot said."
    assert passage.to_dict()["text"] == shown
    answer = Answer(question="q", answer="x", refused=False, citations=[], passages=[passage], prompt="",
                    raw_reply="", model="m", adapter=None, timings_ms={}, tokens={})
    assert answer.to_dict()["passages"][0]["text"] == shown
    assert LINE_BREAK in passage.text  # the stored text keeps it for the sentence splitting
