"""Fuzzing of every decoder of untrusted bytes: targets, seeds and mutations."""
