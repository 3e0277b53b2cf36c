"""Which questions ask for a number or a name, and whether a reply states one from the passages."""

from ragbot.answer_type import (
    NAME,
    NUMBER,
    asked_kind,
    counted_thing,
    invented_numerals,
    names_in,
    numbers_in,
    reply_refusal,
    states_asked,
)


def test_questions_are_sorted_by_the_kind_of_fact_they_ask_for():
    for question in ["How many subjects does MMLU cover?", "how much recorded speech is needed?",
                     "How long a text can the embedding model read?", "When was the DDIM sampler published?",
                     "In what year was BERT released?", "What share of code contains vulnerabilities?",
                     "What learning rate is usually used?", "What is the largest fine under the AI Act?",
                     "What sizes does SmolLM2 come in?"]:
        assert asked_kind(question) == NUMBER, question
    for question in ["Who invented the Wasserstein loss?", "Who first described RAG?", "Which company makes Imagen?",
                     "Which AI companies have adopted C2PA?", "Which country's election was targeted?"]:
        assert asked_kind(question) == NAME, question
    for question in ["What is LoRA?", "When should I use RAG?", "How does DPO differ from RLHF?",
                     "Who is mostly targeted by deepfake images?", "Which metric suits summaries?",
                     "What does the cost of training grow with?", "What two terms make up the ELBO?",
                     "Why are long contexts expensive?"]:
        assert asked_kind(question) is None, question


def test_numbers_are_read_without_citation_marks_or_model_names():
    text = "SmolLM2 has a context window of 8,192 tokens [1]. GPT-4 and all-MiniLM-L6-v2 [2, 3] cost 1.5 million."
    assert numbers_in(text) == {"8192", "1.5", "million"}
    assert numbers_in("A few seconds, in 2024.") == {"few", "2024"}


def test_names_are_capitalised_words_but_not_a_sentences_first_word():
    text = "The paper came from Google [1]. NVIDIA made StyleGAN. Diffusion models followed; SmolLM2 is small."
    assert names_in(text) == {"google", "nvidia", "stylegan", "smollm2"}


def test_an_asked_number_must_come_from_the_passages():
    passages = ["StyleGAN (NVIDIA) generates highly realistic human faces.", "GANs were introduced in 2014."]
    question = "How many layers does the StyleGAN generator have?"
    assert not states_asked(NUMBER, question, "The StyleGAN generator has 10 layers [1].", passages)  # invented
    assert not states_asked(NUMBER, question, "StyleGAN generates realistic faces [1].", passages)  # no number
    assert states_asked(NUMBER, "When were GANs introduced?", "GANs were introduced in 2014 [2].", passages)
    # A number the question already holds is no answer to it.
    assert not states_asked(NUMBER, "How many parameters does Llama 3 have?", "Llama 3 is large [1].",
                            ["Examples include Llama 3 and Mistral."])
    assert states_asked(NUMBER, "How much recorded speech does voice cloning need?",
                        "A few seconds of recorded speech [1].", ["a voice from a few seconds of speech"])
    assert not states_asked(NUMBER, question, "It has 10 layers.", [])


def test_an_asked_name_must_come_from_the_passages_and_not_the_question():
    passages = ["A variational autoencoder was introduced by Diederik Kingma and Max Welling in 2013.",
                "Diffusion models power systems such as Stable Diffusion, Imagen and Midjourney."]
    assert states_asked(NAME, "Who introduced the variational autoencoder?",
                        "It was introduced by Diederik Kingma and Max Welling [1].", passages)
    # A copied sentence about the thing asked of, naming no one new.
    assert not states_asked(NAME, "Which company makes Imagen?", "Imagen is a diffusion system [2].", passages)
    assert not states_asked(NAME, "Which company makes Imagen?", "Imagen is made by Google [2].", passages)  # invented


def test_a_count_must_count_the_thing_asked_about():
    assert counted_thing("How many attention heads does SmolLM2 use?") == "head"
    assert counted_thing("How many training tokens per parameter did the Chinchilla study suggest?") == "parameter"
    assert counted_thing("How much memory does it need?") is None
    passages = ["SmolLM2 is a family of small language models with 135 million, 360 million and 1.7 billion parameters."]
    assert not states_asked(NUMBER, "How many attention heads does SmolLM2 use?",
                            "SmolLM2 has 135 million parameters [1].", passages)
    assert states_asked(NUMBER, "How many parameters does the smallest SmolLM2 have?",
                        "The smallest has 135 million parameters [1].", passages)


def test_a_numeral_no_passage_states_is_invented():
    passages = ["Fraud teams combine predictive models that score transactions with generative models.",
                "SmolLM2, for example, has a context window of 8,192 tokens."]
    assert invented_numerals("What accuracy does the fraud model reach?",
                             "The fraud model reaches 98.3% accuracy [1].", passages) == {"98.3"}
    assert not invented_numerals("How large is the context window?", "It is 8192 tokens [2].", passages)
    assert not invented_numerals("What does Llama 3 do?", "Llama 3 generates text.", passages)  # from the question
    # Item numbers of a list, citation marks and number words are not stated numbers.
    assert not invented_numerals("What do fraud teams do?", "1. They score transactions [1].\n2) They explain alerts [1].",
                                 passages)
    assert not invented_numerals("Who competes in a GAN?", "Two networks compete [1].", passages)


def test_reply_refusal_names_the_reason():
    passages = ["StyleGAN (NVIDIA) generates highly realistic human faces.", "GANs were introduced in 2014."]
    question = "How many layers does the StyleGAN generator have?"
    assert reply_refusal(question, "It has 10 layers [1].", passages) == "invented_number"
    assert reply_refusal(question, "StyleGAN generates faces [1].", passages) == "asked_fact_missing"
    assert reply_refusal("What does StyleGAN do?", "StyleGAN generates faces [1].", passages) is None
    assert reply_refusal("When were GANs introduced?", "In 2014 [2].", passages) is None
