"""hyperkube.storage."""
