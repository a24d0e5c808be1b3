"""hyperkube.client."""
