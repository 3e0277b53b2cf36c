"""Answer: evidence chosen from the passages, the refusal, the generator's prompt and checks, corrections and follow-ups."""
