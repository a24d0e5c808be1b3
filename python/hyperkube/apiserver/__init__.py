"""hyperkube.apiserver."""
