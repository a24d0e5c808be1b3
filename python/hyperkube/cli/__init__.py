"""The hyperkube command."""
