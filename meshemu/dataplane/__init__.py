"""meshemu.dataplane package."""
