"""Telegram front end: bot wiring, handlers and reply rendering."""
