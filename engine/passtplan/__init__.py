"""passtplan: declarative plan/apply for KubeVirt passt + macvlan network labs."""

__version__ = "0.1.0"
