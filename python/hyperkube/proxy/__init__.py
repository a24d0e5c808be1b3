"""hyperkube.proxy."""
