"""Presentation: the only layer that formats for people (rich tables, Markdown, CSV, JSON)."""
