"""Ingest: files read into Documents (readers, PDFs), cut into chunks, embedded and stored."""
