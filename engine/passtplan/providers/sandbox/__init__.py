"""The sandbox: what stands in for a cluster node and its VMs on this machine."""
