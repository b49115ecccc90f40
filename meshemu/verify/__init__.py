"""meshemu.verify package."""
