"""meshemu.controlplane package."""
