"""hyperkube.kubelet."""
