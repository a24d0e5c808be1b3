"""hyperkube.controllers."""
