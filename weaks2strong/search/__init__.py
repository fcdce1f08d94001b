"""Test-time weak-to-strong methods: a frozen strong model steered by a small tuned/untuned pair."""
