"""meshemu: emulate the BGP route mesh of a Calico-networked Kubernetes cluster on one machine."""

__version__ = "0.1.0"
