"""meshemu.model package."""
