"""Scenarios: a topology and a list of steps (actions and expectations), run against a lab."""
