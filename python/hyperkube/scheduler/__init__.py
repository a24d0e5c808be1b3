"""hyperkube.scheduler."""
