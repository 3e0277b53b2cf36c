"""Answer: evidence chosen from the passages, the refusal, the generator's prompt and the checks on its reply
(generation.py; the models themselves are in ../generators), and the user's corrections."""
