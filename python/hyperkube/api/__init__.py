"""hyperkube.api."""
