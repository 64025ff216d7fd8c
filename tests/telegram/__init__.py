"""Tests for the Telegram front end."""
