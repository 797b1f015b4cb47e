"""The only code that touches the kernel (netlink, /proc/sys, namespaces), Kubernetes or processes.

Everything else in passtplan takes data and returns data.
"""
