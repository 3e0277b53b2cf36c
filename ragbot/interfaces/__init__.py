"""Interfaces: the `ragbot` command and the Gradio chat page, which call RagBot and the stages' own
entry points (tune, doctor, eval) and turn errors into messages; and the chat page's list of
conversations."""
