"""meshemu.report package."""
